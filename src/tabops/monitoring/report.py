"""The drift report as one self-contained HTML page: a summary, a table of every feature's
statistics, and reference-against-live histograms drawn as inline SVG (no script, no
external file, so it can be mailed or archived as is)."""

from __future__ import annotations

from html import escape
from typing import Any

from tabops.monitoring.drift import DriftReport
from tabops.monitoring.rule import DRIFT_TESTS
from tabops.monitoring.stats import Histogram

__all__ = ["render_html"]

_TIER_COLOURS = {"stable": "#2e7d32", "watch": "#ef6c00", "retrain": "#c62828"}
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.4rem;margin:0 0 .3rem} .tier{display:inline-block;padding:.2rem .7rem;border-radius:1rem;color:#fff}
table{border-collapse:collapse;margin:1rem 0;width:100%} td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left}
th{background:#f5f5f5} .drifted{background:#fdecea} .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:1rem}
.card{border:1px solid #ddd;border-radius:.5rem;padding:.6rem} .card h3{font-size:1rem;margin:0 0 .3rem}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;vertical-align:middle}
small{color:#666}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return escape(str(value))


def _svg(hist: Histogram) -> str:
    """Side-by-side bars of the reference and live shares per bin."""
    ref_total = max(sum(hist.reference), 1)
    live_total = max(sum(hist.live), 1)
    shares = [
        (r / ref_total, v / live_total) for r, v in zip(hist.reference, hist.live, strict=True)
    ]
    top = max([max(pair) for pair in shares] + [1e-9])
    width, height, pad = 320, 150, 18
    step = (width - 10) / max(len(shares), 1)
    bars = []
    for i, (ref, live) in enumerate(shares):
        x = 5 + i * step
        for j, (share, colour) in enumerate(((ref, "#90a4ae"), (live, "#1e88e5"))):
            h = (height - pad) * share / top
            bars.append(
                f'<rect x="{x + j * step / 2:.1f}" y="{height - pad - h:.1f}" width="{step / 2 - 1:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(hist.labels[i])}: '
                f"{'reference' if j == 0 else 'live'} {share:.1%}</title></rect>"
            )
    first, last = (
        escape(hist.labels[0]) if hist.labels else "",
        escape(hist.labels[-1]) if hist.labels else "",
    )
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">{"".join(bars)}'
        f'<text x="5" y="{height - 4}" font-size="10">{first[:28]}</text>'
        f'<text x="{width - 5}" y="{height - 4}" font-size="10" text-anchor="end">{last[:28]}</text></svg>'
    )


_HEADINGS = {"statistic": "statistic", "p_value": "p-value", "js_distance": "JS distance"}


def _heading(statistic: str) -> str:
    test = DRIFT_TESTS.get(statistic)
    return _HEADINGS.get(statistic) or (test.label if test is not None else statistic)


def _influence(view: dict[str, Any] | None) -> str:
    """The section on explanations: live mean |contribution| beside training importance."""
    if not view:
        return ""
    rows = "".join(
        f"<tr><td>{escape(f['feature'])}</td><td>{_fmt(f['mean_abs_contribution'])}</td>"
        f"<td>{f['share']:.1%}</td><td>{_fmt(f['live_rank'])}</td>"
        f"<td>{_fmt(f['training_importance'])}</td><td>{_fmt(f['training_rank'])}</td></tr>"
        for f in view["features"]
    )
    return (
        f"<h2>Explanations: live influence against training importance</h2>"
        f"<p>{view['explanations']} explained predictions ({escape(str(view['scale']))} scale)"
        f" · rank correlation {_fmt(view['rank_correlation'])} · shift {_fmt(view['shift'])}"
        f" <small>(0: the training order, 0.5: unrelated, 1: reversed)</small></p>"
        f"<table><tr><th>feature</th><th>mean |contribution|</th><th>share</th>"
        f"<th>live rank</th><th>training importance</th><th>training rank</th></tr>"
        f"{rows}</table>"
    )


def render_html(report: DriftReport, hists: dict[str, Histogram], title: str) -> str:
    """The report as a complete HTML document."""
    colour = _TIER_COLOURS.get(report.tier, "#616161")
    # one column per statistic the run holds, in the order the features hold them
    columns = list(dict.fromkeys(k for f in report.features for k in f.statistics))
    rows = []
    for f in report.features:
        figures = "".join(f"<td>{_fmt(f.statistics.get(c))}</td>" for c in columns)
        rows.append(
            f'<tr class="{"drifted" if f.drifted else ""}"><td>{escape(f.name)}</td><td>{escape(f.kind)}</td>'
            f"<td>{escape(f.test)}</td>{figures}"
            f"<td>{_fmt(f.missing_rate_ref)} → {_fmt(f.missing_rate_live)}</td>"
            f"<td>{'yes' if f.drifted else 'no'}</td><td>{escape(f.reason)}</td></tr>"
        )
    headings = "".join(f"<th>{escape(_heading(c))}</th>" for c in columns)
    cards = []
    for name, hist in hists.items():
        extra = (
            f"<small>{hist.n_unseen} live values in unseen categories</small>"
            if hist.n_unseen
            else ""
        )
        cards.append(f'<div class="card"><h3>{escape(name)}</h3>{_svg(hist)}{extra}</div>')
    summary = escape(report.message)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift: {escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>Drift report: {escape(title)}</h1>
<p><span class="tier" style="background:{colour}">{escape(report.tier)}</span>
 model version {escape(report.model_version)} · {report.n_live} live rows against {report.n_reference} reference rows
 · {escape(report.computed_at.strftime("%Y-%m-%d %H:%M UTC"))}</p>
<p>{summary}</p>
<table><tr><th>feature</th><th>kind</th><th>test</th>{headings}
<th>missing rate</th><th>drifted</th><th>why</th></tr>{"".join(rows)}</table>
<p class="legend"><span style="background:#90a4ae"></span>reference<span style="background:#1e88e5"></span>live
 (share of rows per bin)</p>
<div class="grid">{"".join(cards)}</div>
{_influence(report.explanations)}
</body></html>
"""
