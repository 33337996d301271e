"""The MLflow model registry: log and register versions, aliases, verified loading.

One registered model per use case (named after it); the alias ``champion`` is what is
served. Each version carries its metrics and params (on its run), the spec it was trained
with, its decision policy, the drift reference sample, the sha256 of its artifact, and a
manifest of the sha256 of every file it loads (:mod:`tabops.integrity`), which
:meth:`Registry.load` checks before anything is unpickled or served.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tabops.config import Settings
from tabops.errors import ModelIntegrityError, ModelNotFoundError
from tabops.integrity import (
    MANIFEST_TAG,
    artifact_sha256,
    dump_manifest,
    file_manifest,
    verify_manifest,
)
from tabops.lifecycle.versions import _CV, _TAG, LoadedModel, ModelVersionInfo, holdout_key
from tabops.scoring.base import Decision
from tabops.spec.files import dump_spec, parse_spec
from tabops.training.estimators import skops_trusted_types

if TYPE_CHECKING:
    from tabops.training.fit import TrainedModel

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "Registry",
]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


_FILES = "tabops"  # run artifact folder holding spec, decision, reference, importances
# the model card is written after registration, so it lives outside the folders the
# integrity manifest covers (and the server never loads it)
_CARD = "card"


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

    def log(
        self,
        trained: TrainedModel,
        extra_tags: dict[str, str] | None = None,
        extra_metrics: dict[str, float] | None = None,
    ) -> LoadedModel:
        """Log a trained model as a run and register it as a new version.

        The run's figures also go to ``tabops/metrics.json`` (and to the local run folder,
        see :meth:`run_folder`). The logged artifact is downloaded once, to record its hash
        and to load the model back from it as a server would, so the version can be checked
        without another download.

        Returns:
            The new version, loaded from its logged artifact.
        """
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature

        from tabops.training.card import metrics_document
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
            metrics |= extra_metrics or {}
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
            figures = metrics_document(trained)
            mlflow.log_dict(figures, f"{_FILES}/metrics.json")
            self._write_local(spec.name, run.info.run_id, {"metrics.json": _json(figures)})
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
                # skops, unlike pickle, runs no code on load; tree node arrays are not
                # bounds-checked by scikit-learn, so a forged file could crash the process,
                # which is why every artifact's sha256 is verified before it is loaded
                skops_trusted_types=skops_trusted_types(),
            )
            location = self.client.get_logged_model(info.model_id).artifact_location
            with tempfile.TemporaryDirectory() as tmp:
                model_dir = self._download(location, Path(tmp) / "model")
                sha = artifact_sha256(model_dir)
                # every file the server will load, hashed (integrity.py): the sidecars too
                files = self.client.download_artifacts(
                    run.info.run_id, _FILES, str(Path(tmp) / "files")
                )
                manifest = dump_manifest(file_manifest({"model": model_dir, _FILES: Path(files)}))
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
                MANIFEST_TAG: manifest,
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
            importances=None if trained.importances.empty else trained.importances,
        )

    def run_folder(self, usecase: str, run_id: str) -> Path:
        """The local folder of a run's human-readable files (``metrics.json``, the card),
        under ``var/runs/<use case>/<run id>/``, whatever MLflow store holds the run."""
        return self.settings.var_dir / "runs" / usecase / run_id

    def _write_local(self, usecase: str, run_id: str, files: dict[str, str]) -> None:
        folder = self.run_folder(usecase, run_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, "utf-8")

    def log_card(self, run_id: str, card: dict[str, Any]) -> None:
        """Log a version's model card (``tabops/card.json`` and ``tabops/card.md``) to its
        run, and write both to the local run folder."""
        from tabops.training.card import card_markdown

        markdown = card_markdown(card)
        self.client.log_dict(run_id, card, f"{_CARD}/card.json")
        self.client.log_text(run_id, markdown, f"{_CARD}/card.md")
        self._write_local(card["usecase"], run_id, {"card.json": _json(card), "card.md": markdown})

    def card(self, usecase: str, ref: str) -> dict[str, Any]:
        """A version's model card.

        Raises:
            ModelNotFoundError: no such version, or it was trained before cards existed.
        """
        from mlflow.exceptions import MlflowException

        info = self.version(usecase, ref)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(info.run_id, f"{_CARD}/card.json", tmp)
            except (MlflowException, OSError):
                raise ModelNotFoundError(
                    f"use case '{usecase}' version {info.version} has no model card "
                    "(trained before cards were recorded)"
                ) from None
            card: dict[str, Any] = json.loads(Path(path).read_text("utf-8"))
        card["aliases"] = info.aliases
        return card

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
            verify_manifest(
                info.tags.get(MANIFEST_TAG),
                {"model": model_dir, _FILES: files},
                f"model '{usecase}' v{info.version}",
            )
            spec = parse_spec(
                _yaml_load((files / "spec.yaml").read_text("utf-8")), f"{usecase} v{info.version}"
            )
            decision = Decision.from_dict(json.loads((files / "decision.json").read_text("utf-8")))
            reference = pd.read_parquet(files / "reference.parquet")
            importance_file = files / "feature_importance.csv"
            logged = importance_file.is_file() and importance_file.stat().st_size > 1
            importances = pd.read_csv(importance_file) if logged else None
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
            importances=importances,
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


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def _yaml_load(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _pip_requirements() -> list[str]:
    """The model's runtime requirements, pinned to what trained it (no slow inference)."""
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "numpy", "pandas", "scipy", "skops")
    ]
