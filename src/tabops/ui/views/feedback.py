"""Feedback: the actual outcome of a prediction, one at a time or a CSV file of them."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import streamlit as st

from tabops.ui.client import ApiError
from tabops.ui.context import Context, current, explain

# where the page sits in the navigation (read by ui/app.py without running the page)
PAGE = {"section": "Use", "order": 3, "title": "Feedback", "icon": ":material/fact_check:"}


def _one(ctx: Context) -> None:
    last = st.session_state.get("_predict_result")
    suggested = last[2]["prediction_id"] if last and last[0] == ctx.name else ""
    target = ctx.spec["target"]
    with st.form(f"feedback:{ctx.name}", border=True):
        prediction_id = st.text_input(
            "Prediction id",
            value=suggested,
            key=f"feedback-id:{ctx.name}",
            help="The prediction_id the API returned (shown under each prediction).",
        )
        actual = st.selectbox(
            f"What really happened ({target['name']})",
            ctx.classes,
            key=f"feedback-actual:{ctx.name}",
            help=target.get("description") or None,
        )
        source = st.text_input("Observed by (optional)", help="Who or what observed it.")
        sent = st.form_submit_button("Send", type="primary", icon=":material/send:")
    if sent:
        if not prediction_id.strip():
            st.warning("Enter a prediction id.")
            return
        item: dict[str, Any] = {"prediction_id": prediction_id.strip(), "actual": actual}
        if source.strip():
            item["source"] = source.strip()
        try:
            ctx.client.feedback(ctx.name, [item])
        except ApiError as exc:
            explain(exc, "Feedback not recorded")
            return
        st.success(
            f"Recorded: the outcome of prediction {item['prediction_id']} was **{actual}**.",
            icon=":material/check_circle:",
        )


def _file(ctx: Context) -> None:
    st.write(
        "A CSV file with the columns **prediction_id** and **actual** (what really "
        f"happened: one of {', '.join(ctx.classes)}), and optionally **source**. All rows are "
        "recorded, or none if one is wrong."
    )
    upload = st.file_uploader("CSV file", type=["csv"], key=f"feedback-upload:{ctx.name}")
    if upload is None:
        return
    try:
        frame = pd.read_csv(io.BytesIO(upload.getvalue()), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        st.error(f"Cannot read {upload.name} as CSV: {exc}", icon=":material/error:")
        return
    missing = [c for c in ("prediction_id", "actual") if c not in frame.columns]
    if missing:
        st.error(f"{upload.name} has no column {', '.join(missing)}.", icon=":material/error:")
        return
    items = [
        {
            "prediction_id": str(row["prediction_id"]).strip(),
            "actual": str(row["actual"]).strip(),
        }
        | ({"source": str(row["source"]).strip()} if str(row.get("source", "")).strip() else {})
        for row in frame.to_dict(orient="records")
    ]
    st.caption(f"{upload.name}: {len(items)} rows.")
    st.dataframe(pd.DataFrame(items).head(20), hide_index=True, width="stretch")
    if st.button("Send all", type="primary", icon=":material/send:"):
        try:
            count = ctx.client.feedback(ctx.name, items)
        except ApiError as exc:
            explain(exc, "No feedback recorded")
            return
        st.success(f"Recorded {count} outcomes.", icon=":material/check_circle:")


def render() -> None:
    """The page."""
    ctx = current()
    st.title("Feedback")
    st.caption(ctx.spec["title"])
    st.write(
        "When the real outcome of a case is known, send it here: the monitoring page then "
        "measures the model's live accuracy against it."
    )
    one, many = st.tabs(["One prediction", "A CSV file"])
    with one:
        _one(ctx)
    with many:
        _file(ctx)


render()
