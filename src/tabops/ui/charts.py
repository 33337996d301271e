"""The UI's charts (Vega-Altair, which Streamlit renders natively)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

__all__ = [
    "TIER_COLOURS",
    "contribution_bars",
    "influence_bars",
    "histogram_pair",
    "metrics_bars",
    "probability_bar",
    "score_histogram",
    "timeline",
]

TIER_COLOURS = {
    "stable": "#2e7d32",
    "watch": "#f9a825",
    "retrain": "#c62828",
    "insufficient_data": "#757575",
}
"""Drift tiers: 0 drifted features stable (green), watch (amber), retrain (red)."""

_BLUE, _GREY, _RED = "#1f77b4", "#9e9e9e", "#c62828"


def probability_bar(
    probabilities: dict[str, float],
    names: dict[str, str],
    threshold: float | None,
    positive: str | None,
) -> alt.LayerChart | alt.Chart:
    """Each class's probability as a bar; for a binary task, the positive class's against
    the decision threshold (a red rule)."""
    if positive is not None and threshold is not None:
        p = probabilities.get(positive, 0.0)
        frame = pd.DataFrame({"what": [names[positive]], "probability": [p]})
        bar = (
            alt.Chart(frame)
            .mark_bar(size=28, color=_RED if p >= threshold else _BLUE)
            .encode(
                x=alt.X(
                    "probability:Q",
                    scale=alt.Scale(domain=[0, 1]),
                    axis=alt.Axis(format="%", title=f"probability of '{positive}'"),
                ),
                y=alt.Y("what:N", axis=None),
                tooltip=[alt.Tooltip("probability:Q", format=".1%")],
            )
        )
        rule_frame = pd.DataFrame({"what": [names[positive]], "threshold": [threshold]})
        # a tick across the bar's band (a rule with no y drew nothing in Streamlit's theme)
        rule = (
            alt.Chart(rule_frame)
            .mark_tick(color="#111111", thickness=3, size=44)
            .encode(
                x="threshold:Q",
                y=alt.Y("what:N", axis=None),
                tooltip=[alt.Tooltip("threshold:Q", format=".1%")],
            )
        )
        label = (
            alt.Chart(rule_frame)
            .mark_text(align="left", dx=4, dy=-22, fontSize=12)
            .encode(x="threshold:Q", text=alt.value(f"threshold {threshold:.0%}"))
        )
        layered: alt.LayerChart = (bar + rule + label).properties(height=70)
        return layered
    frame = pd.DataFrame(
        {"class": [names[c] for c in probabilities], "probability": list(probabilities.values())}
    )
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar(color=_BLUE)
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("class:N", sort="-x", title=None),
            tooltip=["class", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=40 * len(frame) + 20)
    )
    return chart


def score_histogram(
    edges: list[float], counts: list[int], threshold: float | None, title: str
) -> alt.LayerChart | alt.Chart:
    """The distribution of served scores, with the threshold when there is one."""
    frame = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "predictions": counts})
    bars = (
        alt.Chart(frame)
        .mark_bar(color=_BLUE)
        .encode(
            x=alt.X("start:Q", bin="binned", scale=alt.Scale(domain=[0, 1]), title=title),
            x2="end:Q",
            y=alt.Y("predictions:Q", title="predictions"),
            tooltip=[
                alt.Tooltip("start:Q", format=".2f"),
                alt.Tooltip("end:Q", format=".2f"),
                "predictions",
            ],
        )
    )
    if threshold is None:
        plain: alt.Chart = bars.properties(height=220)
        return plain
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="black", strokeDash=[4, 3], strokeWidth=2)
        .encode(x="threshold:Q")
    )
    both: alt.LayerChart = (bars + rule).properties(height=220)
    return both


def timeline(
    points: list[dict[str, Any]], names: dict[str, str], since: Any = None, until: Any = None
) -> alt.Chart:
    """Predictions per time bucket, stacked by label, over the window when it has a start."""
    frame = pd.DataFrame(points)
    # naive UTC: Arrow and Vega-Lite drop the zone of tz-aware columns anyway (with a warning)
    frame["start"] = pd.to_datetime(frame["start"], utc=True).dt.tz_convert(None)
    frame["label"] = frame["label"].map(lambda c: names.get(c, c))
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("start:T", title="time (UTC)", scale=_time_domain(since, until)),
            y=alt.Y("count:Q", title="predictions", stack=True),
            color=alt.Color("label:N", title="prediction", legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("start:T", format="%Y-%m-%d %H:%M"), "label", "count"],
        )
        .properties(height=220)
    )
    return chart


def _time_domain(since: Any, until: Any) -> Any:
    if since is None or until is None:
        return alt.Undefined
    bounds = [pd.Timestamp(t).tz_convert(None).isoformat() for t in (since, until)]
    return alt.Scale(domain=bounds)


def histogram_pair(hist: dict[str, Any], feature: str) -> alt.Chart:
    """A feature's reference against its live distribution (shares of each), side by side."""
    bins = [str(b) for b in hist.get("labels", [])]
    rows = []
    for sample in ("reference", "live"):
        counts = hist.get(sample, [])
        total = sum(counts) or 1
        rows += [
            {"bin": b, "sample": sample, "share": c / total}
            for b, c in zip(bins, counts, strict=False)
        ]
    frame = pd.DataFrame(rows)
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X(
                "bin:N", sort=bins, title=feature, axis=alt.Axis(labelAngle=-40, labelLimit=90)
            ),
            xOffset="sample:N",
            y=alt.Y("share:Q", axis=alt.Axis(format="%"), title="share of rows"),
            color=alt.Color(
                "sample:N",
                scale=alt.Scale(domain=["reference", "live"], range=[_GREY, _BLUE]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=["bin", "sample", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=240)
    )
    return chart


def metrics_bars(versions: list[dict[str, Any]], metrics: list[str]) -> alt.Chart:
    """Hold-out metrics of model versions side by side, one group per metric."""
    rows = [
        {"version": f"v{v['version']}", "metric": m, "value": v["metrics"][m]}
        for v in versions
        for m in metrics
        if m in v["metrics"]
    ]
    frame = pd.DataFrame(rows)
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("metric:N", title=None, axis=alt.Axis(labelAngle=-30, labelOverlap=False)),
            xOffset="version:N",
            y=alt.Y("value:Q", title="hold-out value"),
            color=alt.Color("version:N", legend=alt.Legend(orient="bottom")),
            tooltip=["version", "metric", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=260)
    )
    return chart


def contribution_bars(explanation: dict[str, Any], titles: dict[str, str]) -> alt.Chart:
    """Each feature's contribution to one prediction as a horizontal bar, largest first:
    red raises the explained class's output, blue lowers it."""
    rows = [
        {"feature": titles.get(name, name), "contribution": value}
        for name, value in explanation["contributions"].items()
    ]
    frame = pd.DataFrame(rows)
    frame["direction"] = ["raises" if v > 0 else "lowers" for v in frame["contribution"]]
    order = list(
        frame.reindex(frame["contribution"].abs().sort_values(ascending=False).index)["feature"]
    )
    scale = explanation["scale"].replace("_", " ")
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("contribution:Q", title=f"contribution ({scale} of '{explanation['class']}')"),
            y=alt.Y(
                "feature:N",
                sort=order,
                title=None,
                axis=alt.Axis(labelLimit=160, labelOverlap=False),
            ),
            color=alt.Color(
                "direction:N",
                scale=alt.Scale(domain=["raises", "lowers"], range=[_RED, _BLUE]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=["feature", alt.Tooltip("contribution:Q", format=".3f")],
        )
        .properties(height=alt.Step(20))  # one row per feature, every name shown
    )
    return chart


def influence_bars(features: list[dict[str, Any]]) -> alt.Chart:
    """The global view: each feature's share of live influence (mean |contribution|)
    beside its share of training importance."""
    live_total = sum(f["mean_abs_contribution"] for f in features) or 1.0
    train_total = sum(max(f["training_importance"] or 0.0, 0.0) for f in features) or 1.0
    rows = []
    for f in features:
        rows.append(
            {
                "feature": f["feature"],
                "measure": "live",
                "share": f["mean_abs_contribution"] / live_total,
            }
        )
        if f["training_importance"] is not None:
            share = max(f["training_importance"], 0.0) / train_total
            rows.append({"feature": f["feature"], "measure": "training", "share": share})
    frame = pd.DataFrame(rows)
    order = [f["feature"] for f in features]  # most influential live first
    chart: alt.Chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("share:Q", axis=alt.Axis(format="%"), title="share"),
            y=alt.Y(
                "feature:N",
                sort=order,
                title=None,
                axis=alt.Axis(labelLimit=160, labelOverlap=False),
            ),
            yOffset="measure:N",
            color=alt.Color(
                "measure:N",
                scale=alt.Scale(domain=["live", "training"], range=[_BLUE, _GREY]),
                legend=alt.Legend(
                    orient="bottom",
                    title=None,
                    labelLimit=320,
                    labelExpr="datum.label == 'live' ? "
                    "'live: mean |contribution|' : 'training: permutation importance'",
                ),
            ),
            tooltip=["feature", "measure", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=alt.Step(30, **{"for": "position"}))  # per feature: two bars
    )
    return chart
