"""The ``explain`` command: why a model version scores a record as it does."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from tabops.cli._common import _fail, _settings, _user_errors, app, console
from tabops.errors import InvalidFeaturesError, validation_issues


def _record(spec: Any, text: str) -> dict[str, Any]:
    """A record given as JSON, validated as the API validates it."""
    from tabops.spec.derive import record_model

    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"--record is not JSON: {exc}") from None
    try:
        record = record_model(spec).model_validate(raw)
    except ValidationError as exc:
        raise InvalidFeaturesError("invalid record", validation_issues(exc, "")) from None
    values: dict[str, Any] = record.model_dump()
    return values


@app.command()
def explain(
    name: Annotated[str, typer.Argument(help="Use case name")],
    record: Annotated[
        str | None,
        typer.Option(help="The record as JSON (default: a real record of the reference sample)"),
    ] = None,
    version: Annotated[str, typer.Option(help="Version number or alias")] = "champion",
    overview: Annotated[
        bool,
        typer.Option(
            "--global",
            help="Instead: mean absolute contribution per feature over the reference sample, "
            "beside the training importances",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Explain a prediction: the base value, each feature's contribution, the reasons.

    Exact for logistic regression and tree models (see docs/explanations.md); other model
    families are refused.

    Example:
        tabops explain credit --record '{"Seniority": 0, "Home": "rent", ...}'
        tabops explain credit --global
    """
    from tabops.lifecycle.registry import Registry
    from tabops.scoring.explain import Explainer, global_view
    from tabops.scoring.records import api_records

    settings = _settings()
    with _user_errors():
        registry = Registry(settings)
        loaded = registry.load(name, version)
        explainer = Explainer.from_loaded(loaded)
        spec = loaded.spec
        if overview:
            records = api_records(spec, loaded.reference[spec.feature_names])
            view = global_view(
                explainer.explain(records), spec.feature_names, registry.importances(name, version)
            )
            if as_json:
                console.print_json(json.dumps(view.as_dict()))
                return
            table = Table(
                "feature",
                "mean |contribution|",
                "share",
                "live rank",
                "training importance",
                "training rank",
                title=f"{name} v{loaded.version}: {view.explanations} reference rows, "
                f"{view.scale}; rank shift {_fmt(view.shift)} (rho {_fmt(view.rank_correlation)})",
            )
            for f in view.features:
                table.add_row(
                    f.feature,
                    f"{f.mean_abs_contribution:.4f}",
                    f"{f.share:.1%}",
                    f"{f.live_rank:g}",
                    _fmt(f.training_importance),
                    _fmt(f.training_rank),
                )
            console.print(table)
            return
        values = _record(spec, record) if record is not None else loaded.example()
        (explanation,) = explainer.explain([values])
    if as_json:
        console.print_json(json.dumps({"version": loaded.version, **explanation.as_dict()}))
        return
    e = explanation
    console.print(
        f"{name} v{loaded.version}: {e.method}, {e.scale} of {e.output_class}: "
        f"base {e.base_value:.4f} + contributions = {e.value:.4f}",
        highlight=False,
    )
    table = Table("feature", "value", "contribution")
    for feature, contribution in explanation.top(len(explanation.contributions)):
        table.add_row(feature, str(values.get(feature)), f"{contribution:+.4f}")
    console.print(table)
    for reason in explanation.reasons:
        console.print(f"- {reason}", highlight=False)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
