"""Batch: score a CSV file. Rows the API refuses are listed with their reasons; the rest
are scored in batches, with a progress bar, and can be downloaded as CSV."""

from __future__ import annotations

import io
import re
from typing import Any

import pandas as pd
import streamlit as st

from tabops.ui.client import ApiError
from tabops.ui.context import Context, current, explain
from tabops.ui.fields import RowIssue, csv_records, label_text

# where the page sits in the navigation (read by ui/app.py without running the page)
PAGE = {"section": "Use", "order": 2, "title": "Batch", "icon": ":material/table_view:"}

_CHUNK = 500
_RESULT = "_batch_result"
_ROW = re.compile(r"^records\[(\d+)\]\.?(.*)$")


def _score(
    ctx: Context, rows: list[tuple[int, dict[str, Any]]], progress: Any
) -> tuple[list[dict[str, Any]], list[RowIssue]]:
    """Score rows in API batches. A batch the API refuses names its first bad row: that
    row is set aside with its reasons and the rest of the batch is sent again. A batch over
    the API's limit (422 ``batch_too_large``) is sent again in halves."""
    scored: list[dict[str, Any]] = []
    refused: list[RowIssue] = []
    size, start = _CHUNK, 0
    while start < len(rows):
        pending = rows[start : start + size]
        taken = len(pending)
        while pending:
            try:
                answer = ctx.client.predict_batch(ctx.name, [r for _, r in pending])
            except ApiError as exc:
                if exc.code == "batch_too_large" and size > 1:
                    size = max(1, size // 2)
                    break
                bad = {int(m.group(1)) for i in exc.details if (m := _ROW.match(i.field))}
                if exc.status != 422 or not bad:
                    raise
                for issue in exc.details:
                    m = _ROW.match(issue.field)
                    if m is not None:
                        row_number = pending[int(m.group(1))][0]
                        refused.append(RowIssue(row_number, m.group(2) or "-", issue.reason))
                pending = [p for i, p in enumerate(pending) if i not in bad]
                continue
            for (row_number, _), prediction in zip(pending, answer["predictions"], strict=True):
                scored.append({"row": row_number, **_flat(ctx, prediction)})
            pending = []
        else:
            start += taken  # this batch is done (scored or refused row by row)
            progress.progress(
                min(1.0, start / len(rows)),
                text=f"Scored {len(scored)} of {len(rows)} rows",
            )
    return scored, refused


def _flat(ctx: Context, prediction: dict[str, Any]) -> dict[str, Any]:
    out = {
        "prediction": ctx.label(prediction["label"]),
        "label": prediction["label"],
    }
    out |= {f"p_{c}": prediction["probabilities"].get(c) for c in ctx.classes}
    out |= {
        "model_version": prediction["model_version"],
        "prediction_id": prediction["prediction_id"],
    }
    return out


def _template(ctx: Context) -> bytes:
    example = ctx.usecase.get("example") or {}
    frame = pd.DataFrame([{f["name"]: example.get(f["name"]) for f in ctx.spec["features"]}])
    text: str = frame.to_csv(index=False)
    return text.encode("utf-8")


def render() -> None:
    """The page."""
    ctx = current()
    st.title("Batch scoring")
    st.caption(ctx.spec["title"])
    if not ctx.usecase.get("champion_version"):
        st.warning("No model serves this use case yet: train one first (Models page).")
        return
    features = ctx.spec["features"]
    required = [label_text(f) for f in features if f.get("required", True)]
    optional = [label_text(f) for f in features if not f.get("required", True)]
    st.write(
        "Upload a CSV file with one case per row and a header row naming the columns. "
        f"Needed: {', '.join(required)}."
        + (f" Optional (empty means unknown): {', '.join(optional)}." if optional else "")
        + " Other columns are kept in the results but not sent to the model."
    )
    st.download_button(
        "Download a template",
        _template(ctx),
        file_name=f"{ctx.name}-template.csv",
        mime="text/csv",
        icon=":material/download:",
    )
    upload = st.file_uploader("CSV file", type=["csv"], key=f"upload:{ctx.name}")
    if upload is None:
        return
    try:
        frame = pd.read_csv(
            io.BytesIO(upload.getvalue()),
            dtype=str,
            keep_default_na=False,
            sep=None,
            engine="python",
        )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        st.error(f"Cannot read {upload.name} as CSV: {exc}", icon=":material/error:")
        return
    if frame.empty:
        st.warning(f"{upload.name} has no rows.")
        return
    records, issues, missing = csv_records(frame, ctx.spec)
    if missing:
        st.error(f"{upload.name} has no column for: {', '.join(missing)}.", icon=":material/error:")
        return
    st.caption(f"{upload.name}: {len(frame)} rows, {len(frame.columns)} columns.")
    key = (ctx.name, upload.file_id if hasattr(upload, "file_id") else upload.name, len(frame))
    if st.button("Score the file", type="primary", icon=":material/bolt:"):
        progress = st.progress(0.0, text="Scoring...")
        try:
            scored, refused = _score(ctx, records, progress) if records else ([], [])
        except ApiError as exc:
            explain(exc, "Scoring stopped")
            return
        st.session_state[_RESULT] = (key, scored, sorted([*issues, *refused], key=lambda i: i.row))
    stored = st.session_state.get(_RESULT)
    if not stored or stored[0] != key:
        if issues:
            st.warning(
                f"{len({i.row for i in issues})} rows have values that are not of their type."
            )
        return
    _, scored, problems = stored
    bad_rows = sorted({i.row for i in problems})
    good, bad = st.columns(2)
    good.metric("Rows scored", len(scored))
    bad.metric("Rows not scored", len(bad_rows))
    if scored:
        results = pd.DataFrame(scored)
        original = frame.iloc[results["row"]].reset_index(drop=True)
        original.columns = [f"{c} (file)" if c in results.columns else c for c in original.columns]
        table = pd.concat([results[["row"]], original, results.drop(columns=["row"])], axis=1)
        table["row"] = table["row"] + 1  # as people count rows in a file
        st.subheader("Predictions")
        counts = results["prediction"].value_counts()
        st.write(" · ".join(f"**{label}**: {n}" for label, n in counts.items()))
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button(
            "Download the predictions (CSV)",
            table.to_csv(index=False).encode("utf-8"),
            file_name=f"{ctx.name}-predictions.csv",
            mime="text/csv",
            type="primary",
            icon=":material/download:",
        )
    if problems:
        st.subheader("Rows not scored")
        reasons = pd.DataFrame(
            [{"row": i.row + 1, "field": i.field, "reason": i.reason} for i in problems]
        )
        st.dataframe(reasons, hide_index=True, width="stretch")
        st.download_button(
            "Download the refused rows (CSV)",
            reasons.to_csv(index=False).encode("utf-8"),
            file_name=f"{ctx.name}-refused.csv",
            mime="text/csv",
            icon=":material/download:",
        )


render()
