"""Predict: one case filled in a form built from the spec, or one entity scored by its id."""

from __future__ import annotations

from typing import Any

import streamlit as st

from tabops.ui.charts import contribution_bars, probability_bar
from tabops.ui.client import ApiError
from tabops.ui.context import Context, current, explain
from tabops.ui.fields import caption, integer_bounds, label_text

# where the page sits in the navigation (read by ui/app.py without running the page)
PAGE = {"section": "Use", "order": 1, "title": "Predict", "icon": ":material/person_search:"}

_RESULT = "_predict_result"
_ERROR = "_predict_error"
_ID_ERROR = "_predict_id_error"


def _unknown(value: Any) -> str:
    return "unknown" if value is None else str(value)


def _widget(ctx: Context, feature: dict[str, Any], example: dict[str, Any]) -> Any:
    """The input of one feature: bounded number, select box, yes/no toggle; optional
    fields may stay unknown."""
    name, kind = feature["name"], feature["type"]
    required = feature.get("required", True)
    key = f"field:{ctx.name}:{name}"
    label, help_text = label_text(feature), caption(feature) or None
    default = example.get(name)
    if kind == "category":
        values: list[Any] = list(feature["values"])
        choices = values if required else [None, *values]
        index = choices.index(default) if default in choices else 0
        return st.selectbox(
            label, choices, index=index, key=key, help=help_text, format_func=_unknown
        )
    if kind == "boolean":
        if required:
            return st.toggle(label, value=bool(default), key=key, help=help_text)
        choice = st.segmented_control(
            label,
            ["yes", "no", "unknown"],
            default="unknown" if default is None else ("yes" if default else "no"),
            key=key,
            help=help_text,
        )
        return None if choice in (None, "unknown") else choice == "yes"
    options: dict[str, Any] = {"key": key, "help": help_text}  # typed loosely: many overloads
    if not required:
        options["placeholder"] = "unknown"
    if kind == "integer":
        low, high = integer_bounds(feature)
        value = int(default) if default is not None else (None if not required else low or 0)
        options.update(min_value=low, max_value=high, value=value, step=1)
    else:
        low_f = float(feature["min"]) if feature.get("min") is not None else None
        high_f = float(feature["max"]) if feature.get("max") is not None else None
        value_f = (
            float(default) if default is not None else (None if not required else low_f or 0.0)
        )
        options.update(min_value=low_f, max_value=high_f, value=value_f, step=0.1, format="%g")
    return st.number_input(label, **options)


def _show_result(ctx: Context, result: dict[str, Any], heading: str) -> None:
    label = result["label"]
    names = {c: ctx.label(c) for c in ctx.classes}
    with st.container(border=True):
        st.caption(heading)
        st.markdown(f"## {ctx.label(label)}")
        probabilities: dict[str, float] = result["probabilities"]
        threshold = result.get("threshold")
        positive = ctx.positive
        if positive is not None and threshold is not None:
            p = probabilities[positive]
            side = "at or above" if p >= threshold else "below"
            st.write(
                f"Probability of **{positive}**: **{p:.0%}**, {side} the decision threshold "
                f"of {threshold:.0%}, so the model predicts **{label}**"
                + (f", shown as **{ctx.label(label)}**." if ctx.label(label) != label else ".")
            )
        else:
            st.write(f"The most likely class is **{label}** ({probabilities[label]:.0%}).")
        st.altair_chart(probability_bar(probabilities, names, threshold, positive), width="stretch")
        if result.get("explanation"):
            _show_explanation(ctx, result["explanation"])
        st.caption(f"Model version {result['model_version']} · prediction id")
        st.code(result["prediction_id"], language=None, wrap_lines=True)
        st.caption("Keep the prediction id to send the actual outcome later (Feedback page).")


def _explains(ctx: Context) -> bool:
    """Ask for explanations when the champion gives them and the spec does not refuse."""
    return bool(ctx.usecase.get("explainable")) and ctx.spec.get("explain") != "never"


def _show_explanation(ctx: Context, explanation: dict[str, Any]) -> None:
    st.markdown("#### Why")
    for reason in explanation["reasons"]:
        st.markdown(f"- {reason}")
    titles = {f["name"]: f.get("title") or f["name"] for f in ctx.spec["features"]}
    st.altair_chart(contribution_bars(explanation, titles), width="stretch")
    scale = explanation["scale"].replace("_", " ")
    st.caption(
        f"Contributions on the {scale} scale of '{explanation['class']}' "
        f"({explanation['method'].replace('_', ' ')}): an average case gives "
        f"{explanation['base_value']:.3f}, and this one's contributions add up to "
        f"{explanation['value']:.3f}."
    )


def _submit(ctx: Context, record: dict[str, Any]) -> None:
    st.session_state.pop(_ERROR, None)
    try:
        result = ctx.client.predict(ctx.name, record, explain=_explains(ctx))
        st.session_state[_RESULT] = (ctx.name, "This case", result)
    except ApiError as exc:
        st.session_state.pop(_RESULT, None)
        st.session_state[_ERROR] = (ctx.name, exc)


def _form(ctx: Context) -> None:
    spec = ctx.spec
    example: dict[str, Any] = ctx.usecase.get("example") or {}
    stored = st.session_state.get(_ERROR)
    error: ApiError | None = stored[1] if stored and stored[0] == ctx.name else None
    with st.form(f"predict:{ctx.name}", border=True):
        columns = st.columns(3)
        record: dict[str, Any] = {}
        for i, feature in enumerate(spec["features"]):
            with columns[i % 3]:
                record[feature["name"]] = _widget(ctx, feature, example)
                if error is not None:
                    for reason in error.for_field(feature["name"]):
                        st.error(reason, icon=":material/error:")
        submitted = st.form_submit_button("Predict", type="primary", icon=":material/bolt:")
    st.caption("Defaults are a real case from the training data.")
    if submitted:
        _submit(ctx, record)
        st.rerun()
    if error is not None:
        names = {f["name"] for f in spec["features"]}
        if error.status == 422 and any(error.for_field(n) for n in names):
            st.error(f"{error.message}: see the fields marked above.", icon=":material/error:")
        else:
            explain(error, "The API did not score this case")


def _by_id(ctx: Context) -> None:
    entity = ctx.spec["entity_id"]
    st.write(
        f"Score a case stored in the **{ctx.name}** table by its **{entity['name']}**"
        + (f" ({entity['description']})." if entity.get("description") else ".")
    )
    stored = st.session_state.get(_ID_ERROR)
    error: ApiError | None = stored[1] if stored and stored[0] == ctx.name else None
    with st.form(f"predict-id:{ctx.name}", border=True):
        entity_id = st.text_input(entity["name"], key=f"entity:{ctx.name}")
        if error is not None:
            if error.status in (404, 422):
                reasons = error.for_field("entity_id")
                text = f"{error.message}: {'; '.join(reasons)}" if reasons else error.message
                st.error(text, icon=":material/error:")
            else:
                explain(error, "The API did not score this case")
        submitted = st.form_submit_button("Predict by id", type="primary", icon=":material/bolt:")
    if submitted:
        st.session_state.pop(_ID_ERROR, None)
        wanted = entity_id.strip()
        if not wanted:
            st.session_state[_ID_ERROR] = (
                ctx.name,
                ApiError(422, "missing", f"Enter a {entity['name']}."),
            )
        else:
            try:
                result = ctx.client.predict_by_id(ctx.name, wanted, explain=_explains(ctx))
                st.session_state[_RESULT] = (ctx.name, f"{entity['name']} {wanted}", result)
            except ApiError as exc:
                st.session_state.pop(_RESULT, None)
                st.session_state[_ID_ERROR] = (ctx.name, exc)
        st.rerun()


def render() -> None:
    """The page."""
    ctx = current()
    spec = ctx.spec
    st.title(spec["title"])
    if spec.get("description"):
        st.write(spec["description"])
    if not ctx.usecase.get("champion_version"):
        st.warning("No model serves this use case yet: train one first (Models page).")
        return
    form_side, result_side = st.columns([3, 2], gap="large")
    with form_side:
        if spec.get("entity_id"):
            fill, by_id = st.tabs(["Fill in a case", f"By {spec['entity_id']['name']}"])
            with fill:
                _form(ctx)
            with by_id:
                _by_id(ctx)
        else:
            _form(ctx)
    with result_side:
        stored = st.session_state.get(_RESULT)
        if stored and stored[0] == ctx.name:
            _show_result(ctx, stored[2], stored[1])
        else:
            target = spec["target"]
            st.info(
                f"Fill in the case and press **Predict**: the model predicts "
                f"**{target['name']}** ({', '.join(ctx.label(c) for c in ctx.classes)}).",
                icon=":material/info:",
            )


render()
