"""Explanations of every bundled use case's trained champion, and of tree models on the
bundled data: additivity and reference computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tabops.config import Settings
from tabops.data.datasets import read_source
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import TrainingOutcome
from tabops.scoring.explain import Explainer, global_view, load_explainer
from tabops.scoring.records import records_to_frame, reference_records
from tabops.spec.files import list_usecases, load_usecase
from tabops.spec.schema import ModelSpec
from tabops.training.pipeline import build_pipeline
from tests.conftest import USECASES
from tests.factories import fold_by_column_names, model_output

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # shap's plotting module warns about matplotlib
    import shap

pytestmark = pytest.mark.slow

Trained = tuple[Settings, dict[str, TrainingOutcome]]


@pytest.mark.parametrize("name", list_usecases(USECASES))
def test_champion_explanations_are_the_coefficients_terms(trained: Trained, name: str) -> None:
    settings, _ = trained
    loaded = Registry(settings).load(name)
    spec, pipeline = loaded.spec, loaded.pipeline
    explainer, reason = load_explainer(loaded)
    assert explainer is not None, reason
    assert explainer.method.method == "linear"  # every bundled use case is linear today
    n_reference = len(loaded.reference)
    every = reference_records(spec, loaded.reference)
    records = every[:150] + every[n_reference:][:60]  # reference rows, then rows with gaps
    explanations = explainer.explain(records)
    frame = records_to_frame(spec, records)
    # additivity: the decision function scikit-learn computes from the pipeline
    for cls in {e.output_class for e in explanations}:
        raw = model_output(pipeline, frame, cls, raw_scores=True)
        rows = [i for i, e in enumerate(explanations) if e.output_class == cls]
        values = np.array([explanations[i].value for i in rows])
        np.testing.assert_allclose(values, raw[rows], rtol=0, atol=1e-6)
    # the reference computation: coefficient x (value - reference mean), folded by name
    transform, model = pipeline[:-1], pipeline[-1]
    x = np.asarray(transform.transform(frame))
    baseline = np.asarray(transform.transform(loaded.reference[spec.feature_names])).mean(0)
    classes = [str(c) for c in model.classes_]
    for i, e in enumerate(explanations):
        if model.coef_.shape[0] == 1:
            coef = model.coef_[0] * (1 if e.output_class == classes[1] else -1)
        else:
            coef = model.coef_[classes.index(e.output_class)]
        want = fold_by_column_names(spec, pipeline, (coef * (x[i] - baseline))[None, :])[0]
        np.testing.assert_allclose(list(e.contributions.values()), want, rtol=0, atol=1e-9)
    if spec.task == "binary":
        assert {e.output_class for e in explanations} == {spec.positive_class}
    else:  # the highest-scoring class: the one served
        assert [e.output_class for e in explanations] == list(map(str, pipeline.predict(frame)))
    titled = [e for e in explanations if e.reasons]
    assert len(titled) == len(explanations)
    assert all(" the " in r for e in titled for r in e.reasons)


def test_global_view_beside_the_logged_importances(trained: Trained) -> None:
    settings, _ = trained
    registry = Registry(settings)
    loaded = registry.load("credit")
    importances = registry.importances("credit")
    assert sorted(importances["feature"]) == sorted(loaded.spec.feature_names)
    explainer = Explainer.from_loaded(loaded)
    records = reference_records(loaded.spec, loaded.reference)[:500]
    view = global_view(explainer.explain(records), loaded.spec.feature_names, importances)
    assert view.explanations == 500 and view.scale == "log_odds"
    assert {f.feature for f in view.features} == set(loaded.spec.feature_names)
    assert view.rank_correlation is not None and view.shift is not None
    assert 0.0 <= view.shift <= 1.0
    # the linear model's most influential features live are important in training too
    top_live = {f.feature for f in view.features[:3]}
    top_training = set(importances["feature"].head(6))
    assert top_live & top_training


@pytest.mark.parametrize(
    ("name", "family", "params"),
    [
        ("credit", "hist_gradient_boosting", {"max_iter": 60}),
        ("credit", "random_forest", {"n_estimators": 40, "max_depth": 8}),
        ("iris", "hist_gradient_boosting", {"max_iter": 30}),
        ("iris", "random_forest", {"n_estimators": 40}),
    ],
)
def test_tree_models_on_bundled_data_match_shap_and_add_up(
    trained: Trained, name: str, family: str, params: dict[str, int]
) -> None:
    settings, _ = trained
    base = load_usecase(settings.usecases_dir, name)
    spec = base.model_copy(update={"model": ModelSpec(family=family, params=params)})
    data = read_source(spec, settings)
    pipeline = build_pipeline(spec).fit(data[spec.feature_names], data[spec.target.name])
    background = data.sample(n=min(300, len(data)), random_state=0)
    explainer = Explainer(spec, pipeline, background)
    every = reference_records(spec, data.head(80))
    records = every[:80] + every[80:][:40]
    explanations = explainer.explain(records)
    frame = records_to_frame(spec, records)
    boosting = family == "hist_gradient_boosting"
    x = np.asarray(pipeline[:-1].transform(frame))
    values = np.asarray(shap.TreeExplainer(pipeline[-1]).shap_values(x))
    classes = [str(c) for c in pipeline.classes_]
    raw = {c: model_output(pipeline, frame, c, raw_scores=boosting) for c in classes}
    for i, e in enumerate(explanations):
        assert abs(e.value - raw[e.output_class][i]) <= 1e-6
        if values.ndim == 2:  # binary boosting: the log-odds of classes_[1]
            column = values[[i]] * (1 if e.output_class == classes[1] else -1)
        else:
            column = values[[i], :, classes.index(e.output_class)]
        want = fold_by_column_names(spec, pipeline, column)[0]
        np.testing.assert_allclose(list(e.contributions.values()), want, rtol=0, atol=1e-9)
    assert {e.scale for e in explanations} == {
        ("log_odds" if spec.task == "binary" else "class_logit") if boosting else "probability"
    }
