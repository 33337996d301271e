"""Which features drive live predictions: the global view of the explanations recorded in
the audit trail, beside the version's training importances."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from tabops.scoring.explain import global_view
from tabops.store.monitoring import live_explanations

if TYPE_CHECKING:
    from tabops.lifecycle.versions import LoadedModel

__all__ = ["DEFAULT_WINDOW", "live_influence"]

DEFAULT_WINDOW = 1000
"""Explained predictions averaged when no window is given."""


def live_influence(
    engine: Engine, loaded: LoadedModel, window: int | None = None
) -> dict[str, Any]:
    """Mean absolute contribution per feature over the last ``window`` explained live
    predictions of a version, beside its training importances.

    Args:
        engine: The audit store.
        loaded: The version (its explained predictions, its importances).
        window: Explained predictions to average, newest first (default 1,000).

    Returns:
        The use case, version and window, and the global view
        (:meth:`~tabops.scoring.explain.GlobalView.as_dict`): ``explanations`` is the count
        averaged, each feature's mean absolute contribution, share, ranks and training
        importance, the rank correlation and the shift.
    """
    size = window or DEFAULT_WINDOW
    spec = loaded.spec
    recorded = live_explanations(engine, spec.name, loaded.version, size)
    view = global_view(recorded, spec.feature_names, loaded.importances)
    return {
        "usecase": spec.name,
        "model_version": loaded.version,
        "window": size,
        **view.as_dict(),
    }
