"""The MLflow model registry: log and register versions, aliases, verified loading.

One registered model per use case (named after it); the alias ``champion`` is what is
served. Each version carries its metrics and params (on its run), the spec it was trained
with, its decision policy, the drift reference sample, and the sha256 of its artifact,
which :meth:`Registry.load` checks before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tabops.config import Settings
from tabops.errors import ModelIntegrityError, ModelNotFoundError
from tabops.scoring.base import Decision
from tabops.scoring.records import api_records
from tabops.spec.schema import UseCase, dump_spec, parse_spec

if TYPE_CHECKING:
    from tabops.training.fit import TrainedModel

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "LoadedModel",
    "ModelVersionInfo",
    "Registry",
    "artifact_sha256",
    "cv_metrics",
    "holdout_key",
    "holdout_metrics",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
_TAG = "tabops."
_HOLDOUT = "holdout_"
_CV = "cv_"


def holdout_key(metric: str) -> str:
    """The MLflow key of a hold-out metric (``holdout_roc_auc``)."""
    return f"{_HOLDOUT}{metric}"


def holdout_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The hold-out figures among a run's MLflow metrics, by plain name; per-class
    figures (``holdout_recall.bad``) left out."""
    return {
        k.removeprefix(_HOLDOUT): v
        for k, v in metrics.items()
        if k.startswith(_HOLDOUT) and "." not in k
    }


def cv_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The cross-validation figures among a run's MLflow metrics, by plain name."""
    return {k.removeprefix(_CV): v for k, v in metrics.items() if k.startswith(_CV)}


_FILES = "tabops"  # run artifact folder holding spec, decision, reference, importances


# Types our pipelines hold beyond what skops trusts by default. skops, unlike pickle, runs
# no code on load; tree node arrays are not bounds-checked by scikit-learn, so a forged
# file could crash the process, which is why every artifact's sha256 is verified against
# the registered one before it is loaded.
_SKOPS_TRUSTED = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


def artifact_sha256(folder: Path) -> str:
    """sha256 over every file of a model folder (relative paths and contents), sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered version as listed (no artifact loaded)."""

    usecase: str
    version: str
    run_id: str
    created_at: datetime
    aliases: list[str]
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    gate: str | None = None
    """The promotion decision recorded when it was trained."""

    @property
    def sha256(self) -> str | None:
        return self.tags.get(f"{_TAG}sha256")

    def holdout(self, metric: str) -> float | None:
        return self.metrics.get(holdout_key(metric))

    @property
    def holdout_metrics(self) -> dict[str, float]:
        return holdout_metrics(self.metrics)

    @property
    def cv_metrics(self) -> dict[str, float]:
        return cv_metrics(self.metrics)

    @property
    def n_rows(self) -> int | None:
        """Training rows the version was trained on."""
        value = self.tags.get(f"{_TAG}n_rows")
        return int(value) if value else None


@dataclass
class LoadedModel:
    """A verified, loaded model version with everything needed to serve it."""

    spec: UseCase
    pipeline: Any
    decision: Decision
    version: str
    run_id: str
    sha256: str
    metrics: dict[str, float]
    reference: pd.DataFrame
    n_rows: int | None = None
    """Training rows the version was trained on (its table may have grown since)."""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def holdout_metrics(self) -> dict[str, float]:
        return holdout_metrics(self.metrics)

    @property
    def cv_metrics(self) -> dict[str, float]:
        return cv_metrics(self.metrics)

    def example(self) -> dict[str, Any]:
        """A real record from the reference sample, as the API takes it (for the docs)."""

        features = self.reference[self.spec.feature_names]
        complete = features.dropna()
        return api_records(self.spec, (complete if not complete.empty else features).head(1))[0]


class Registry:
    """MLflow tracking and registry for every use case."""

    def __init__(self, settings: Settings) -> None:
        # MLflow's fluent API and its telemetry read the process environment.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow import MlflowClient

        settings.var_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.client = MlflowClient(settings.tracking_uri, settings.registry_uri)

    # --- experiments and logging ------------------------------------------------------

    def experiment_id(self, usecase: str) -> str:
        """The use case's experiment, created on first use."""
        name = f"{self.settings.mlflow.experiment}/{usecase}"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        root = self.settings.artifact_root
        location = f"{root.rstrip('/')}/{usecase}" if root else None
        return str(self.client.create_experiment(name, artifact_location=location))

    def log(self, trained: TrainedModel, extra_tags: dict[str, str] | None = None) -> LoadedModel:
        """Log a trained model as a run and register it as a new version.

        The logged artifact is downloaded once, to record its hash and to load the model
        back from it as a server would, so the version can be checked without another
        download.

        Returns:
            The new version, loaded from its logged artifact.
        """
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature

        from tabops.training.figures import confusion_matrix_figure, roc_figure

        spec = trained.spec
        mlflow.set_tracking_uri(self.settings.tracking_uri)
        mlflow.set_registry_uri(self.settings.registry_uri)
        experiment_id = self.experiment_id(spec.name)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.name}-train") as run:
            mlflow.log_params(
                {
                    "family": spec.model.family,
                    **{f"model.{k}": v for k, v in sorted(trained.params.items())},
                    "cv_folds": spec.training.cv_folds,
                    "test_size": spec.training.test_size,
                    "seed": spec.training.seed,
                    "decision_policy": spec.decision.policy,
                    "n_rows": trained.n_rows,
                    "n_train": trained.n_train,
                    "n_holdout": trained.n_holdout,
                }
            )
            metrics = {f"{_CV}{k}": v for k, v in trained.cv_metrics.items()}
            metrics |= {holdout_key(k): v for k, v in trained.holdout_metrics.items()}
            if trained.decision.threshold is not None:
                metrics["threshold"] = trained.decision.threshold
            mlflow.log_metrics(metrics)
            mlflow.set_tags(
                {
                    f"{_TAG}usecase": spec.name,
                    f"{_TAG}data_sha256": trained.data_sha256,
                    f"{_TAG}n_rows": str(trained.n_rows),
                    **(extra_tags or {}),
                }
            )
            mlflow.log_text(dump_spec(spec), f"{_FILES}/spec.yaml")
            mlflow.log_dict(trained.decision.as_dict(), f"{_FILES}/decision.json")
            y_hold = trained.holdout[spec.target.name].to_numpy()
            with tempfile.TemporaryDirectory() as tmp:
                ref = Path(tmp) / "reference.parquet"
                trained.reference.to_parquet(ref, index=False)
                mlflow.log_artifact(str(ref), _FILES)
                imp = Path(tmp) / "feature_importance.csv"
                trained.importances.to_csv(imp, index=False)
                mlflow.log_artifact(str(imp), _FILES)
            import matplotlib.pyplot as plt

            for figure, name in (
                (
                    confusion_matrix_figure(y_hold, trained.holdout_proba, trained.decision),
                    "confusion_matrix.png",
                ),
                (roc_figure(y_hold, trained.holdout_proba, trained.decision), "roc_curve.png"),
            ):
                mlflow.log_figure(figure, f"{_FILES}/{name}")
                plt.close(figure)
            sample = trained.reference[spec.feature_names].head(5)
            signature = infer_signature(sample, trained.pipeline.predict_proba(sample))
            info = mlflow.sklearn.log_model(
                trained.pipeline,
                name="model",
                signature=signature,
                input_example=sample,
                pip_requirements=_pip_requirements(),
                skops_trusted_types=_SKOPS_TRUSTED,
            )
            location = self.client.get_logged_model(info.model_id).artifact_location
            with tempfile.TemporaryDirectory() as tmp:
                model_dir = self._download(location, Path(tmp))
                sha = artifact_sha256(model_dir)
                pipeline = mlflow.sklearn.load_model(str(model_dir))
            mlflow.set_tag(f"{_TAG}sha256", sha)
            run_id = run.info.run_id
        if not self._exists(spec.name):
            self.client.create_registered_model(spec.name, description=spec.description or None)
        version = self.client.create_model_version(
            spec.name,
            source=info.model_uri,
            run_id=run_id,
            # an MLflow 3 tracking server refuses a models:/ source without its model id
            model_id=info.model_id,
            tags={
                f"{_TAG}sha256": sha,
                f"{_TAG}data_sha256": trained.data_sha256,
                f"{_TAG}n_rows": str(trained.n_rows),
            },
            description=f"{spec.title}: {spec.model.family}, hold-out {spec.gate.metric} "
            f"{trained.holdout_metrics.get(spec.gate.metric, float('nan')):.4f}",
        )
        return LoadedModel(
            spec=spec,
            pipeline=pipeline,
            decision=trained.decision,
            version=str(version.version),
            run_id=run_id,
            sha256=sha,
            metrics=metrics,
            reference=trained.reference,
            n_rows=trained.n_rows,
        )

    def _exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
            return True
        except MlflowException:
            return False

    def _download(self, artifact_uri: str, dst: Path) -> Path:
        """Download a model folder from its storage location (never through ``models:/``
        URIs, which MLflow resolves with the process-wide tracking URI)."""
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=artifact_uri,
                dst_path=str(dst),
                tracking_uri=self.settings.tracking_uri,
            )
        )

    # --- versions and aliases ---------------------------------------------------------

    def _info(self, usecase: str, mv: Any) -> ModelVersionInfo:
        run = self.client.get_run(mv.run_id) if mv.run_id else None
        return ModelVersionInfo(
            usecase=usecase,
            version=str(mv.version),
            run_id=mv.run_id or "",
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
            aliases=sorted(getattr(mv, "aliases", []) or []),
            metrics=dict(run.data.metrics) if run else {},
            params=dict(run.data.params) if run else {},
            tags=dict(mv.tags or {}),
            gate=run.data.tags.get(f"{_TAG}gate") if run else None,
        )

    def version(self, usecase: str, ref: str) -> ModelVersionInfo:
        """A version by number or alias.

        Raises:
            ModelNotFoundError: no such model, version or alias.
        """
        from mlflow.exceptions import MlflowException

        try:
            if ref.isdigit():
                mv = self.client.get_model_version(usecase, ref)
            else:
                mv = self.client.get_model_version_by_alias(usecase, ref)
        except MlflowException:
            raise ModelNotFoundError(f"use case '{usecase}' has no model version '{ref}'") from None
        return self._info(usecase, mv)

    def champion(self, usecase: str) -> ModelVersionInfo | None:
        """The current champion, or None when there is none."""
        return self.alias(usecase, CHAMPION)

    def alias(self, usecase: str, alias: str) -> ModelVersionInfo | None:
        """The version under an alias, or None when the alias is not set."""
        try:
            return self.version(usecase, alias)
        except ModelNotFoundError:
            return None

    def delete_alias(self, usecase: str, alias: str) -> None:
        """Remove an alias (no error if it is not set)."""
        if self.alias(usecase, alias) is not None:
            self.client.delete_registered_model_alias(usecase, alias)

    def versions(self, usecase: str) -> list[ModelVersionInfo]:
        """Every registered version, newest first."""
        if not self._exists(usecase):
            return []
        found = self.client.search_model_versions(f"name = '{usecase}'")
        # search results carry no aliases in every MLflow version: take them from the model
        aliases: dict[str, list[str]] = {}
        for alias, version in (self.client.get_registered_model(usecase).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        infos = [self._info(usecase, mv) for mv in found]
        infos = [replace(i, aliases=sorted(aliases.get(i.version, []))) for i in infos]
        return sorted(infos, key=lambda v: int(v.version), reverse=True)

    def set_alias(self, usecase: str, version: str, alias: str = CHAMPION) -> None:
        """Point ``alias`` at ``version`` (the version must exist)."""
        self.version(usecase, version)
        self.client.set_registered_model_alias(usecase, alias, version)

    # --- loading ----------------------------------------------------------------------

    def load(self, usecase: str, ref: str = CHAMPION) -> LoadedModel:
        """Download, verify and load a version.

        Raises:
            ModelNotFoundError: no such version or alias.
            ModelIntegrityError: the artifact's hash differs from the one recorded.
        """
        import mlflow.sklearn

        info = self.version(usecase, ref)
        location = self.client.get_model_version_download_uri(usecase, info.version)
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = self._download(location, Path(tmp) / "model")
            sha = artifact_sha256(model_dir)
            if info.sha256 is None or sha != info.sha256:
                raise ModelIntegrityError(
                    f"model '{usecase}' v{info.version}: artifact sha256 {sha[:12]}... does not "
                    f"match the registered {str(info.sha256)[:12]}...; refusing to load it"
                )
            files = Path(
                self.client.download_artifacts(info.run_id, _FILES, str(Path(tmp) / "files"))
            )
            spec = parse_spec(
                _yaml_load((files / "spec.yaml").read_text("utf-8")), f"{usecase} v{info.version}"
            )
            decision = Decision.from_dict(json.loads((files / "decision.json").read_text("utf-8")))
            reference = pd.read_parquet(files / "reference.parquet")
            pipeline = mlflow.sklearn.load_model(str(model_dir))
        return LoadedModel(
            spec=spec,
            pipeline=pipeline,
            decision=decision,
            version=info.version,
            run_id=info.run_id,
            sha256=sha,
            metrics=info.metrics,
            reference=reference,
            n_rows=int(info.tags[f"{_TAG}n_rows"]) if f"{_TAG}n_rows" in info.tags else None,
        )

    def importances(self, usecase: str, ref: str = CHAMPION) -> pd.DataFrame:
        """The permutation importances logged with a version (``feature_importance.csv``:
        ``feature``, ``importance_mean``, ``importance_std``), most important first.

        Raises:
            ModelNotFoundError: no such version or alias.
        """
        info = self.version(usecase, ref)
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(
                info.run_id, f"{_FILES}/feature_importance.csv", tmp
            )
            return pd.read_csv(path)


def _yaml_load(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _pip_requirements() -> list[str]:
    """The model's runtime requirements, pinned to what trained it (no slow inference)."""
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "numpy", "pandas", "scipy", "skops")
    ]
