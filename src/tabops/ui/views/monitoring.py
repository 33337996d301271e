"""Monitoring: what was served over a window, drift against the reference, live quality
against the hold-out, and the recent predictions themselves (admin key)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from tabops.ui.charts import (
    TIER_COLOURS,
    histogram_pair,
    influence_bars,
    score_histogram,
    timeline,
)
from tabops.ui.client import ApiError
from tabops.ui.context import Context, current, explain

# where the page sits in the navigation (read by ui/app.py without running the page)
PAGE = {"section": "Operate", "order": 4, "title": "Monitoring", "icon": ":material/monitoring:"}

_WINDOWS = {
    "1h": "last hour",
    "24h": "last 24 hours",
    "7d": "last 7 days",
    "30d": "last 30 days",
    "all": "all time",
}
_DRIFT = "_monitoring_drift"
_TIER_TEXT = {
    "stable": "Stable: no feature drifted",
    "watch": "Watch: some features drifted",
    "retrain": "Retrain: many features drifted",
    "insufficient_data": "Not enough live predictions yet to test drift",
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


def _ms(value: float | None) -> str:
    return "–" if value is None else (f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms")


def _kpis(ctx: Context, figures: dict[str, Any]) -> None:
    n = figures["predictions"]
    labels: dict[str, int] = figures["labels"]
    cells = st.columns(4 + min(len(labels), 3))
    cells[0].metric("Predictions", f"{n:,}", help=f"{figures['requests']:,} calls")
    for i, cls in enumerate(sorted(labels, key=lambda c: -labels[c])[:3]):
        share = labels[cls] / n if n else None
        cells[1 + i].metric(f"{ctx.label(cls)}", _pct(share), help=f"{labels[cls]:,} predictions")
    latency = figures["latency_ms"]
    k = 1 + min(len(labels), 3)
    cells[k].metric("Latency p50", _ms(latency["p50"]), help="Scoring time of each call")
    cells[k + 1].metric("Latency p95", _ms(latency["p95"]), help=f"p99 {_ms(latency['p99'])}")
    errors = figures["errors"]
    cells[k + 2].metric(
        "Error rate",
        _pct(errors["rate"]),
        help=f"Prediction calls of this API server since it started (all use cases): "
        f"{errors['requests']:,} calls, {errors['rejected']:,} refused (4xx), "
        f"{errors['failed']:,} failed (5xx).",
    )


def _served(ctx: Context, window: str) -> None:
    try:
        figures = ctx.client.summary(ctx.name, window)
    except ApiError as exc:
        explain(exc, "No summary")
        return
    _kpis(ctx, figures)
    if not figures["predictions"]:
        st.info(f"No predictions in the {_WINDOWS.get(window, window)}.", icon=":material/info:")
        return
    st.caption(
        f"{figures['feedback']:,} outcomes received in the window · last prediction "
        f"{pd.Timestamp(figures['last_at']).strftime('%Y-%m-%d %H:%M:%S')} UTC"
    )
    left, right = st.columns(2)
    positive = ctx.positive
    what = f"probability of '{positive}'" if positive else "probability of the top class"
    with left:
        st.markdown("**Score distribution**")
        hist = figures["score_histogram"]
        chart = score_histogram(hist["edges"], hist["counts"], ctx.usecase.get("threshold"), what)
        st.altair_chart(chart, width="stretch")
    with right:
        st.markdown("**Predictions over time**")
        names = {c: ctx.label(c) for c in ctx.classes}
        chart = timeline(figures["timeline"], names, figures["since"], figures["until"])
        st.altair_chart(chart, width="stretch")


def _drift(ctx: Context) -> None:
    key = (ctx.name, ctx.usecase.get("champion_version"))
    stored = st.session_state.get(_DRIFT)
    again = st.button("Check drift again", icon=":material/refresh:")
    if again or not stored or stored[0] != key:
        try:
            report = ctx.client.drift(ctx.name)
        except ApiError as exc:
            explain(exc, "No drift report")
            return
        st.session_state[_DRIFT] = (key, report)
    else:
        report = stored[1]
    tier = report["tier"]
    colour = TIER_COLOURS.get(tier, "#757575")
    st.markdown(
        f'<div style="border-left: 6px solid {colour}; padding: 0.4rem 0.8rem; '
        f'background: {colour}1a; border-radius: 4px;"><b>{_TIER_TEXT.get(tier, tier)}</b> · '
        f"{report['n_drifted']} of {len(report['features'])} features drifted · "
        f"{report['n_live']:,} live rows against {report['n_reference']:,} reference rows · "
        f"{report['message']}</div>",
        unsafe_allow_html=True,
    )
    params = report.get("params") or {}
    watch_at, retrain_at = params.get("watch_at", 1), params.get("retrain_at", 3)
    stable = "no feature drifted" if watch_at == 1 else f"fewer than {watch_at} drifted"
    st.caption(
        f"Tiers: stable when {stable} (green), watch from {watch_at} drifted features "
        f"(amber), retrain from {retrain_at} (red). A feature drifts when its test's p-value "
        f"is under {params.get('p_value', 0.01)} or its PSI over "
        f"{params.get('psi_threshold', 0.2)}."
    )
    rows = [
        {
            "feature": f["name"] if f["kind"] not in ("score", "label") else f"({f['kind']})",
            "type": f["kind"],
            "test": f["test"],
            "p-value": f["p_value"],
            "PSI": f["psi"],
            "drifted": "yes" if f["drifted"] else "no",
            "why": f["reason"],
        }
        for f in [
            *report["features"],
            *(d for d in (report.get("score_drift"), report.get("label_drift")) if d),
        ]
    ]
    table = pd.DataFrame(rows)
    drifted_colour = f"background-color: {TIER_COLOURS['retrain']}33"

    def _row_style(row: pd.Series) -> list[str]:
        return [drifted_colour if row["drifted"] == "yes" else "" for _ in row]

    st.dataframe(
        table.style.apply(_row_style, axis=1).format(
            {"p-value": "{:.3g}", "PSI": "{:.3f}"}, na_rep="–"
        ),
        hide_index=True,
        width="stretch",
    )
    histograms: dict[str, Any] = report.get("histograms") or {}
    if histograms:
        names = list(histograms)
        first_drifted = next((f["name"] for f in report["features"] if f["drifted"]), names[0])
        chosen = st.selectbox(
            "Reference against live, for feature",
            names,
            index=names.index(first_drifted) if first_drifted in names else 0,
            key=f"drift-feature:{ctx.name}",
        )
        st.altair_chart(histogram_pair(histograms[chosen], chosen), width="stretch")


def _history(ctx: Context) -> None:
    try:
        runs = ctx.client.drift_history(ctx.name, 200)
    except ApiError as exc:
        explain(exc, "No drift history")
        return
    if len(runs) < 2:
        st.caption("Drift history appears after a few checks (the server checks periodically).")
        return
    frame = pd.DataFrame(runs)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).dt.tz_convert(None)
    chart = (
        alt.Chart(frame)
        .mark_line(point=True, color="#616161")
        .encode(
            x=alt.X("created_at:T", title="time (UTC)"),
            y=alt.Y("n_drifted:Q", title="drifted features"),
            tooltip=["created_at:T", "model_version", "tier", "n_drifted", "n_live"],
        )
        + alt.Chart(frame)
        .mark_point(filled=True, size=80)
        .encode(
            x="created_at:T",
            y="n_drifted:Q",
            color=alt.Color(
                "tier:N",
                scale=alt.Scale(domain=list(TIER_COLOURS), range=list(TIER_COLOURS.values())),
                legend=alt.Legend(orient="bottom"),
            ),
        )
    ).properties(height=200)
    st.altair_chart(chart, width="stretch")


def _quality(ctx: Context) -> None:
    try:
        quality = ctx.client.performance(ctx.name)
    except ApiError as exc:
        explain(exc, "No live quality")
        return
    holdout: dict[str, float] = quality.get("holdout") or {}
    measured: dict[str, Any] = quality.get("measured") or {}
    estimated: dict[str, Any] = quality.get("estimated") or {}
    names = [
        m
        for m in ("accuracy", "f1", "roc_auc", "brier", "balanced_accuracy")
        if m in holdout or m in measured or m in estimated
    ]
    rows = [
        {
            "metric": m,
            "hold-out (at training)": holdout.get(m),
            f"live, measured on {quality['n_labelled']:,} outcomes": measured.get(m),
            "live, estimated without labels": estimated.get(m),
        }
        for m in names
    ]
    # as text: Streamlit's grid shows a missing number as "None"
    table = pd.DataFrame(
        [{k: v if k == "metric" else _figure(v) for k, v in row.items()} for row in rows]
    ).set_index("metric")
    st.dataframe(
        table,
        width="stretch",
    )
    st.caption(
        f"Over the last {quality['n_predictions']:,} predictions of version "
        f"{quality['model_version']}. The estimate uses the model's own probabilities "
        "(confidence-based), before any outcome is known."
    )


def _influence(ctx: Context) -> None:
    """The global view of the explanations recorded with live predictions."""
    try:
        view = ctx.client.explanations(ctx.name)
    except ApiError as exc:
        explain(exc, "No global view of the explanations")
        return
    if not view["explanations"]:
        st.info(
            "No explained predictions of this version yet: predictions asked with "
            "`explain=true` (the Predict page asks) are recorded with their explanation.",
            icon=":material/info:",
        )
        return
    shift = view["shift"]
    st.write(
        f"Over the last **{view['explanations']:,}** explained predictions of version "
        f"{view['model_version']}: rank correlation with the training importances "
        f"**{_figure(view['rank_correlation'])}**, shift **{_figure(shift)}** "
        "(0: live predictions lean on the features in the order training found important, "
        "0.5: unrelated, 1: reversed)."
    )
    st.altair_chart(influence_bars(view["features"]), width="stretch")
    st.caption(
        f"Live: each feature's share of the mean absolute contribution ({view['scale']} "
        "scale). Training: its share of the permutation importance on the hold-out."
    )


def _recent(ctx: Context) -> None:
    entity = ctx.spec.get("entity_id")
    cols = st.columns(4)
    label = cols[0].selectbox(
        "Prediction",
        [None, *ctx.classes],
        format_func=lambda c: "any" if c is None else ctx.label(c),
    )
    feedback = cols[1].selectbox(
        "Outcome known",
        [None, True, False],
        format_func=lambda v: {None: "any", True: "yes", False: "no"}[v],
    )
    entity_id = (
        cols[2].text_input(
            f"Client history ({entity['name']})",
            key=f"history:{ctx.name}",
            help="Predictions made by id for this entity",
        )
        if entity
        else None
    )
    limit = cols[3].number_input("Rows", min_value=10, max_value=1000, value=100, step=10)
    try:
        page = ctx.client.predictions(
            ctx.name,
            label=label,
            has_feedback=feedback,
            entity_id=(entity_id or "").strip() or None,
            limit=int(limit),
        )
    except ApiError as exc:
        explain(exc, "Recent predictions")
        return
    items = page["items"]
    if not items:
        st.caption("No prediction matches.")
        return
    features = [f["name"] for f in ctx.spec["features"]]
    table = pd.DataFrame(
        [
            {
                "time": pd.Timestamp(i["created_at"]).strftime("%Y-%m-%d %H:%M:%S"),
                "prediction": ctx.label(i["label"]),
                "score": i["score"],
                "outcome": i["actual"] or "",
                "version": i["model_version"],
                **{f: i["features"].get(f) for f in features},
                "prediction_id": i["prediction_id"],
            }
            for i in items
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button(
        "Export as CSV",
        table.to_csv(index=False).encode("utf-8"),
        file_name=f"{ctx.name}-predictions.csv",
        mime="text/csv",
        icon=":material/download:",
    )


def render() -> None:
    """The page."""
    ctx = current()
    st.title("Monitoring")
    st.caption(ctx.spec["title"])
    if not ctx.usecase.get("champion_version"):
        st.warning("No model serves this use case yet: train one first (Models page).")
        return
    window = (
        st.segmented_control(
            "Window",
            list(_WINDOWS),
            default="24h",
            format_func=lambda w: _WINDOWS[w],
            key=f"window:{ctx.name}",
        )
        or "24h"
    )
    _served(ctx, window)
    st.subheader("Drift of live inputs")
    _drift(ctx)
    with st.expander("Drift history", icon=":material/timeline:"):
        _history(ctx)
    st.subheader("Live quality")
    _quality(ctx)
    st.subheader("What drives live predictions")
    _influence(ctx)
    st.subheader("Recent predictions")
    _recent(ctx)


render()
