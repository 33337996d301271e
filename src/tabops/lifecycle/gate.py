"""Whether a version may serve: the promotion gate, the sanity checks, manual promotion."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabops.errors import SanityCheckError
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.versions import LoadedModel, ModelVersionInfo, holdout_key
from tabops.scoring.base import Decision, PipelineScorer
from tabops.scoring.records import reference_records
from tabops.spec.schema import UseCase
from tabops.training.fit import evaluate


def gate_decision(
    spec: UseCase,
    new: dict[str, float],
    champion: ModelVersionInfo | None,
    force: bool = False,
    *,
    champion_metrics: dict[str, float] | None = None,
    baseline: dict[str, float] | None = None,
    n_rows: int | None = None,
) -> tuple[bool, str]:
    """Whether a new version's hold-out metrics earn it the champion alias, and why.

    Args:
        spec: The use case (its gate metric and margins).
        new: The candidate's hold-out metrics.
        champion: The current champion, if any.
        force: Promote whatever the figures.
        champion_metrics: The champion re-scored on the candidate's hold-out rows (see
            :func:`rescore_champion`); without them its own recorded hold-out is used, and
            the reason says so.
        baseline: The prior baseline's metrics on the same hold-out: a first version
            must beat them by ``gate.baseline_margin``.
        n_rows: Rows of the hold-out, for the reason.
    """
    metric = spec.gate.metric
    value = new.get(metric)
    if value is None:
        return False, f"hold-out {metric} missing"
    higher = spec.gate.higher_is_better

    def beats(current: float, margin: float) -> bool:
        return value > current + margin if higher else value < current - margin

    if champion is None:
        base = (baseline or {}).get(metric)
        if base is None:
            return (True, "promotion forced") if force else (True, f"first version ({metric})")
        margin = spec.gate.baseline_margin
        better = beats(base, margin)
        verb = "beats" if better else "does not beat"
        text = (
            f"first version: hold-out {metric} {value:.4f} {verb} the prior baseline "
            f"({base:.4f}) by the margin {margin:g}"
        )
        if force:
            return True, f"promotion forced; {text}"
        return better, text
    same_rows = champion_metrics is not None and champion_metrics.get(metric) is not None
    current = champion_metrics[metric] if same_rows else champion.holdout(metric)  # type: ignore[index]
    if current is None:
        return True, f"champion v{champion.version} has no hold-out {metric}"
    margin = spec.gate.margin
    better = beats(current, margin)
    verb = "beats" if better else "does not beat"
    rows = f" {n_rows}" if n_rows is not None else ""
    basis = f"on the same{rows} hold-out rows" if same_rows else "on its own hold-out"
    text = (
        f"hold-out {metric} {value:.4f} {verb} champion v{champion.version} "
        f"({current:.4f} {basis}) by the margin {margin:g}"
    )
    if force:
        return True, f"promotion forced; {text}"
    return better, text


def rescore_champion(
    loaded: LoadedModel, spec: UseCase, holdout: pd.DataFrame
) -> tuple[dict[str, float] | None, str]:
    """Score the champion on the candidate's hold-out rows, so that both versions are
    compared on the same data however the table has grown since the champion trained.

    The champion keeps its own decision threshold. It cannot be re-scored when it needs
    a feature the candidate's rows lack or predicts other classes.

    Returns:
        Its metrics on those rows (None if it cannot be re-scored), and a note why not.
    """
    needed = loaded.spec.feature_names
    absent = [n for n in needed if n not in holdout.columns]
    if absent:
        return None, f"champion needs features the new rows lack: {', '.join(absent)}"
    classes = list(spec.target.classes)
    model_classes = [str(c) for c in loaded.pipeline.classes_]
    if sorted(model_classes) != sorted(classes) or loaded.decision.positive != (
        spec.positive_class
    ):
        return None, "champion predicts other classes"
    try:
        proba = np.asarray(loaded.pipeline.predict_proba(holdout[needed]), dtype=float)
    except Exception as exc:  # a champion of an older spec may not take the new rows
        return None, f"champion cannot score the new rows: {type(exc).__name__}: {exc}"
    proba = proba[:, [model_classes.index(c) for c in classes]]
    decision = Decision(tuple(classes), spec.positive_class, loaded.decision.threshold)
    y = holdout[spec.target.name].astype(str).to_numpy()
    metrics = evaluate(spec, y, proba, decision)
    return {k: v for k, v in metrics.items() if "." not in k}, ""


def check_version(loaded: LoadedModel) -> None:
    """The checks a version passes before it may serve, beyond the hash verified on load:
    its metrics are present and it scores its own reference sample without error.

    Raises:
        SanityCheckError: saying which check failed.
    """

    spec = loaded.spec
    needed = [holdout_key(spec.gate.metric), holdout_key("accuracy")]
    missing = [m for m in needed if m not in loaded.metrics]
    if missing:
        raise SanityCheckError(f"version {loaded.version} lacks metrics: {', '.join(missing)}")
    records = reference_records(spec, loaded.reference)
    if not records:
        raise SanityCheckError(f"version {loaded.version} has no reference sample")
    try:
        scores = PipelineScorer(spec, loaded.pipeline, loaded.decision, loaded.version).score(
            records
        )
    except Exception as exc:
        raise SanityCheckError(
            f"version {loaded.version} cannot score its reference sample: {exc}"
        ) from None
    if not (scores.probabilities >= 0).all() or len(scores.labels) != len(records):
        raise SanityCheckError(f"version {loaded.version} gives invalid probabilities")


def promote_version(
    registry: Registry, usecase: str, version: str, alias: str = "champion"
) -> tuple[LoadedModel, str | None]:
    """Point ``champion`` (or ``challenger``) at a version after loading and checking it:
    manual promotion, rollback to any earlier version, or a shadow challenger.

    Returns:
        The version, loaded and checked (hand it to the model set rather than load it
        again), and the version the alias pointed at before, if any.

    Raises:
        ModelNotFoundError: no such version.
        ModelIntegrityError, SanityCheckError: the version may not serve.
    """
    previous = registry.alias(usecase, alias)
    loaded = registry.load(usecase, version)
    check_version(loaded)
    registry.set_alias(usecase, version, alias)
    return loaded, previous.version if previous is not None else None
