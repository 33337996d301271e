"""Models (admin key): versions side by side, champion and challenger, training with live
progress, promotion and rollback, the shadow comparison, and a link to the MLflow UI."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from tabops.ui.charts import metrics_bars
from tabops.ui.client import ApiError
from tabops.ui.context import Context, current, explain

# where the page sits in the navigation (read by ui/app.py without running the page)
PAGE = {"section": "Operate", "order": 5, "title": "Models", "icon": ":material/model_training:"}

_JOB = "_models_job"
_DONE = ("succeeded", "failed")
_CHART_METRICS = ("roc_auc", "accuracy", "balanced_accuracy", "f1", "precision", "recall")


def _badges(aliases: list[str]) -> str:
    out = []
    if "champion" in aliases:
        out.append(":green-badge[:material/star: champion]")
    if "challenger" in aliases:
        out.append(":orange-badge[:material/science: challenger]")
    return " ".join(out)


def _table(versions: list[dict[str, Any]], gate_metric: str) -> pd.DataFrame:
    metrics = sorted({m for v in versions for m in v["metrics"]})
    metrics.sort(key=lambda m: (m != gate_metric, m))
    rows = []
    for v in versions:
        rows.append(
            {
                "version": v["version"],
                "role": ", ".join(v["aliases"]) or "",
                "trained": pd.Timestamp(v["created_at"]).strftime("%Y-%m-%d %H:%M"),
                **{m: v["metrics"].get(m) for m in metrics},
                "rows": v.get("n_rows"),
                "family": v["params"].get("family") or v["params"].get("model_family"),
                "gate": v.get("gate"),
            }
        )
    return pd.DataFrame(rows)


def _show_job(ctx: Context, job_id: str) -> dict[str, Any] | None:
    """A job's progress bar and, once it ended, its outcome."""
    try:
        job: dict[str, Any] = ctx.client.job(job_id)
    except ApiError as exc:
        explain(exc, "Job status")
        return None
    st.progress(
        job["percent"] / 100,
        text=f"Training job {job['id'][:8]}: {job['state']} · {job['stage'] or ''}",
    )
    if job["state"] == "succeeded":
        verdict = "promoted to champion" if job["promoted"] else "not promoted"
        st.success(
            f"Version {job['version']} trained and {verdict}: {job['reason']}",
            icon=":material/check_circle:",
        )
    elif job["state"] == "failed":
        st.error(f"Training failed: {job['error']}", icon=":material/error:")
    return job


@st.fragment(run_every=1.0)
def _follow_job(ctx: Context, job_id: str) -> None:
    """The running job, refreshed every second; the whole page reloads when it ends."""
    job = _show_job(ctx, job_id)
    if job is not None and job["state"] in _DONE:
        st.session_state[_JOB] = (ctx.name, job_id, False)
        st.rerun(scope="app")  # the version list and the badges change


def _train(ctx: Context) -> None:
    with st.form(f"train:{ctx.name}", border=True):
        st.write(
            "Train a new version on the current table. It replaces the champion only if it "
            f"beats it on **{ctx.spec['gate']['metric']}** (the promotion gate), unless forced."
        )
        force = st.checkbox("Promote even if the gate says no")
        start = st.form_submit_button("Train a new version", icon=":material/model_training:")
    if start:
        try:
            job = ctx.client.train(ctx.name, force=force)
        except ApiError as exc:
            explain(exc, "Training not started")
            return
        st.session_state[_JOB] = (ctx.name, job["id"], True)
    stored = st.session_state.get(_JOB)
    if stored and stored[0] == ctx.name:
        if stored[2]:
            _follow_job(ctx, stored[1])
        else:
            _show_job(ctx, stored[1])


def _actions(ctx: Context, versions: list[dict[str, Any]]) -> None:
    champion = next((v["version"] for v in versions if "champion" in v["aliases"]), None)
    challenger = next((v["version"] for v in versions if "challenger" in v["aliases"]), None)
    names = [v["version"] for v in versions]
    cols = st.columns([2, 2, 2, 2])
    chosen = cols[0].selectbox(
        "Version",
        names,
        format_func=lambda n: (
            f"v{n}"
            + (" (champion)" if n == champion else "")
            + (" (challenger)" if n == challenger else "")
        ),
        key=f"version:{ctx.name}",
    )
    older = chosen is not None and champion is not None and int(chosen) < int(champion)
    promote = cols[1].button(
        "Roll back to this version" if older else "Make champion",
        type="primary",
        disabled=chosen == champion,
        icon=":material/star:",
        key=f"promote:{ctx.name}",
    )
    shadow = cols[2].button(
        "Make challenger (shadow)",
        disabled=chosen in (champion, challenger),
        icon=":material/science:",
        key=f"shadow:{ctx.name}",
        help="Every live request is also scored by the challenger, off the response path.",
    )
    stop = cols[3].button(
        "Stop shadow scoring",
        disabled=challenger is None,
        icon=":material/block:",
        key=f"unshadow:{ctx.name}",
    )
    try:
        if promote and chosen is not None:
            result = ctx.client.promote(ctx.name, chosen)
            st.session_state["_models_notice"] = (
                f"Version {result['version']} is champion (was {result['previous']}); "
                f"this API server serves version {result['serving']}."
            )
            st.rerun()
        if shadow and chosen is not None:
            ctx.client.promote(ctx.name, chosen, alias="challenger")
            st.session_state["_models_notice"] = f"Version {chosen} is challenger."
            st.rerun()
        if stop:
            ctx.client.drop_challenger(ctx.name)
            st.session_state["_models_notice"] = "Shadow scoring stopped."
            st.rerun()
    except ApiError as exc:
        explain(exc, "Not changed")


def _shadow(ctx: Context) -> None:
    try:
        comparison = ctx.client.compare(ctx.name)
    except ApiError as exc:
        explain(exc, "No comparison")
        return
    if not comparison["pairs"]:
        st.caption("No request scored by both models yet.")
        return
    cells = st.columns(4)
    cells[0].metric("Requests scored by both", f"{comparison['pairs']:,}")
    cells[1].metric("Same label", f"{comparison['agreement']:.1%}")
    cells[2].metric("Mean score difference", f"{comparison['mean_abs_score_diff']:.3f}")
    if comparison["labelled"]:
        gain = comparison["challenger_accuracy"] - comparison["champion_accuracy"]
        cells[3].metric(
            f"Challenger accuracy on {comparison['labelled']} outcomes",
            f"{comparison['challenger_accuracy']:.1%}",
            delta=f"{gain:+.1%} vs champion",
        )
    else:
        cells[3].metric("Outcomes known", "0")


def render() -> None:
    """The page."""
    ctx = current()
    st.title("Models")
    st.caption(ctx.spec["title"])
    notice = st.session_state.pop("_models_notice", None)
    if notice:
        st.success(notice, icon=":material/check_circle:")
    try:
        versions = ctx.client.models(ctx.name)
    except ApiError as exc:
        explain(exc, "Cannot list the model versions")
        return
    link = ctx.settings.mlflow_url
    if link:
        st.markdown(f"Runs, parameters and artifacts in the [MLflow UI]({link}).")
    if not versions:
        st.info("No version trained yet.", icon=":material/info:")
        _train(ctx)
        return
    gate = ctx.spec["gate"]["metric"]
    for v in versions[:6]:
        badges = _badges(v["aliases"])
        if badges:
            metric = v["metrics"].get(gate)
            shown = f" · {gate} {metric:.3f}" if metric is not None else ""
            st.markdown(f"**Version {v['version']}** {badges}{shown}")
    chart_metrics = [m for m in _CHART_METRICS if any(m in v["metrics"] for v in versions)]
    st.dataframe(
        _table(versions, gate).style.format(precision=4, na_rep="–"),
        hide_index=True,
        width="stretch",
    )
    for v in versions:
        if v.get("run_url"):
            st.caption(f"[Version {v['version']} in MLflow]({v['run_url']})")
    chart_side, _ = st.columns([3, 2])
    with chart_side:
        st.markdown("**Hold-out metrics by version**")
        st.altair_chart(metrics_bars(versions[:8], chart_metrics), width="stretch")
    st.subheader("Promote, roll back, shadow")
    _actions(ctx, versions)
    if any("challenger" in v["aliases"] for v in versions):
        st.subheader("Champion against challenger")
        _shadow(ctx)
    st.subheader("Train")
    _train(ctx)


render()
