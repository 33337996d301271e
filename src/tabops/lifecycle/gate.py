"""Whether a version may serve: the promotion gate, the sanity checks, manual promotion."""

from __future__ import annotations

from tabops.errors import SanityCheckError
from tabops.lifecycle.registry import LoadedModel, ModelVersionInfo, Registry, holdout_key
from tabops.scoring.base import PipelineScorer
from tabops.scoring.records import reference_records
from tabops.spec.schema import UseCase


def gate_decision(
    spec: UseCase, new: dict[str, float], champion: ModelVersionInfo | None, force: bool = False
) -> tuple[bool, str]:
    """Whether a new version's hold-out metrics earn it the champion alias, and why."""
    metric = spec.gate.metric
    value = new.get(metric)
    if value is None:
        return False, f"hold-out {metric} missing"
    if force:
        return True, "promotion forced"
    if champion is None:
        return True, f"first version (hold-out {metric} {value:.4f})"
    current = champion.holdout(metric)
    if current is None:
        return True, f"champion v{champion.version} has no hold-out {metric}"
    margin = spec.gate.margin
    better = value > current + margin if spec.gate.higher_is_better else value < current - margin
    verb = "beats" if better else "does not beat"
    return better, (
        f"hold-out {metric} {value:.4f} {verb} champion v{champion.version} ({current:.4f}) "
        f"by the margin {margin:g}"
    )


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
