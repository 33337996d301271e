"""What each version's run records for people: ``metrics.json`` and the model card.

``metrics.json`` holds the figures (hold-out, cross-validation, baseline, threshold, data
hash). The model card describes the version as a whole: its data and class balance, its
metrics, its decision threshold and the policy that chose it, its feature importances and
the gate's decision. Both are logged with the run, the card as JSON and as markdown.
"""

from __future__ import annotations

from typing import Any

from tabops.training.fit import TrainedModel

__all__ = ["card_markdown", "metrics_document", "model_card"]


def _plain(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if "." not in k}


def metrics_document(trained: TrainedModel) -> dict[str, Any]:
    """The run's figures as one JSON-ready mapping."""
    return {
        "usecase": trained.spec.name,
        "holdout": trained.holdout_metrics,
        "cv": trained.cv_metrics,
        "baseline": _plain(trained.baseline_metrics),
        "threshold": trained.decision.threshold,
        "decision_policy": trained.spec.decision.policy,
        "data_sha256": trained.data_sha256,
        "n_rows": trained.n_rows,
        "n_train": trained.n_train,
        "n_holdout": trained.n_holdout,
    }


def model_card(
    trained: TrainedModel,
    *,
    version: str,
    run_id: str,
    promoted: bool,
    reason: str,
    champion_version: str | None = None,
    champion_metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The model card of a version, as JSON-ready data.

    Args:
        trained: The fitted model and its figures.
        version: Its registered version.
        run_id: Its MLflow run.
        promoted: Whether the gate made it champion.
        reason: The gate's reason.
        champion_version: The champion it was compared with, if any.
        champion_metrics: That champion's metrics on the same hold-out rows.
    """
    spec = trained.spec
    total = sum(trained.class_counts.values()) or 1
    decision: dict[str, Any] = {
        "policy": spec.decision.policy,
        "threshold": trained.decision.threshold,
    }
    if spec.decision.policy == "fixed" and spec.task == "binary":
        decision["explanation"] = "the spec's fixed threshold"
    elif spec.decision.policy == "max_f1":
        decision["explanation"] = "maximises F1 of the positive class on out-of-fold predictions"
    elif spec.decision.policy == "min_cost":
        costs = spec.decision.costs
        decision["costs"] = costs.model_dump()
        decision["explanation"] = (
            f"minimises {costs.false_positive:g} x false positives + "
            f"{costs.false_negative:g} x false negatives on out-of-fold predictions"
        )
    else:
        decision["explanation"] = "the most probable class"
    return {
        "usecase": spec.name,
        "title": spec.title,
        "description": spec.description,
        "version": version,
        "run_id": run_id,
        "task": spec.task,
        "target": {
            "name": spec.target.name,
            "classes": list(spec.target.classes),
            "positive": spec.positive_class,
        },
        "data": {
            "files": list(spec.data.files),
            "provenance": spec.data.provenance,
            "rows": trained.n_rows,
            "train_rows": trained.n_train,
            "holdout_rows": trained.n_holdout,
            "sha256": trained.data_sha256,
            "class_balance": {
                c: {"rows": n, "share": round(n / total, 4)}
                for c, n in trained.class_counts.items()
            },
        },
        "model": {
            "family": spec.model.family,
            "params": {k: v for k, v in spec.model.params.items()},
        },
        "features": [
            {"name": f.name, "type": f.type, "description": f.description} for f in spec.features
        ],
        "decision": decision,
        "metrics": {
            "holdout": _plain(trained.holdout_metrics),
            "cv": trained.cv_metrics,
            "baseline": _plain(trained.baseline_metrics),
            "per_class": {k: v for k, v in trained.holdout_metrics.items() if "." in k},
        },
        "importances": [
            {
                "feature": str(r["feature"]),
                "importance_mean": float(r["importance_mean"]),
                "importance_std": float(r["importance_std"]),
            }
            for r in trained.importances.to_dict("records")
        ],
        "gate": {
            "metric": spec.gate.metric,
            "margin": spec.gate.margin,
            "baseline_margin": spec.gate.baseline_margin,
            "promoted": promoted,
            "reason": reason,
            "champion_version": champion_version,
            "champion_metrics": champion_metrics,
        },
        "warnings": list(trained.warnings),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as markdown (the same content as the JSON card)."""
    data, gate, decision = card["data"], card["gate"], card["decision"]
    lines = [
        f"# {card['title']}: model card, version {card['version']}",
        "",
        card["description"] or "",
        "",
        f"- use case: `{card['usecase']}` ({card['task']}); MLflow run `{card['run_id']}`",
        f"- target: `{card['target']['name']}`, classes {', '.join(card['target']['classes'])}"
        + (f"; positive `{card['target']['positive']}`" if card["target"]["positive"] else ""),
        f"- model: {card['model']['family']} {card['model']['params'] or ''}".rstrip(),
        "",
        "## Data",
        "",
        f"{data['rows']} rows ({data['train_rows']} for training, {data['holdout_rows']} held "
        f"out) from {', '.join(data['files'])}; sha256 `{data['sha256'][:16]}…`.",
        "",
        "| class | rows | share |",
        "|---|---|---|",
        *(f"| {c} | {v['rows']} | {v['share']:.1%} |" for c, v in data["class_balance"].items()),
        "",
        "## Metrics",
        "",
        "| metric | hold-out | prior baseline | cross-validation (mean) |",
        "|---|---|---|---|",
    ]
    holdout, baseline, cv = (card["metrics"][k] for k in ("holdout", "baseline", "cv"))
    for name in sorted(holdout):
        lines.append(
            f"| {name} | {_fmt(holdout[name])} | {_fmt(baseline.get(name))} "
            f"| {_fmt(cv.get(f'{name}_mean'))} |"
        )
    lines += [
        "",
        "## Decision",
        "",
        f"Policy `{decision['policy']}`, threshold {_fmt(decision['threshold'])}: "
        f"{decision['explanation']}.",
        "",
        "## Feature importance (permutation, hold-out)",
        "",
        "| feature | importance | std |",
        "|---|---|---|",
        *(
            f"| {r['feature']} | {r['importance_mean']:.4f} | {r['importance_std']:.4f} |"
            for r in card["importances"]
        ),
        "",
        "## Gate",
        "",
        f"{'Promoted to champion' if gate['promoted'] else 'Not promoted'}: {gate['reason']}.",
    ]
    if card["warnings"]:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in card["warnings"])]
    return "\n".join(lines) + "\n"
