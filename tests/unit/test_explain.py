"""Per-prediction explanations: additivity, reference computations, folding, reasons."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.tree import DecisionTreeClassifier

from tabops.errors import ExplanationNotSupportedError, SpecError
from tabops.lifecycle.versions import LoadedModel
from tabops.scoring.base import Decision
from tabops.scoring.explain import (
    Explainer,
    Explanation,
    global_view,
    load_explainer,
    should_explain,
)
from tabops.scoring.explain.reasons import ReasonWriter, title
from tabops.scoring.records import api_records
from tabops.spec.files import parse_spec
from tabops.spec.schema import UseCase
from tabops.training.pipeline import build_pipeline
from tests.factories import fold_by_column_names, model_output, spec_dict, toy_frame

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # shap's plotting module warns about matplotlib
    import shap

FAMILIES = {
    "logistic_regression": {},
    "random_forest": {"n_estimators": 40, "max_depth": 6},
    "hist_gradient_boosting": {"max_iter": 40},
}
EXTRA_TREES = {
    "decision_tree": lambda: DecisionTreeClassifier(max_depth=5, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=30, max_depth=6, random_state=0),
}


def _multiclass_frame(n: int = 450, seed: int = 1) -> pd.DataFrame:
    frame = toy_frame(n, seed)
    rng = np.random.default_rng(seed)
    score = 0.05 * (frame["age"] - 50) + (frame["plan"] == "pro") * 1.5 + rng.normal(0, 0.7, n)
    frame["outcome"] = np.select([score < -0.5, score < 0.6], ["low", "mid"], "high")
    return frame


def _spec(family: str, task: str = "binary", positive: str = "yes") -> UseCase:
    target: dict[str, Any] = {"name": "outcome", "classes": ["no", "yes"], "positive": positive}
    if task == "multiclass":
        target = {"name": "outcome", "classes": ["low", "mid", "high"]}
    params = FAMILIES.get(family, {})
    model = {"family": family if family in FAMILIES else "random_forest", "params": params}
    return parse_spec(spec_dict(task=task, target=target, model=model))


def _fit(family: str, task: str = "binary", positive: str = "yes") -> tuple[UseCase, Pipeline]:
    spec = _spec(family, task, positive)
    frame = toy_frame(500) if task == "binary" else _multiclass_frame()
    pipeline = build_pipeline(spec)
    if family in EXTRA_TREES:
        pipeline.set_params(model=EXTRA_TREES[family]())
    pipeline.fit(frame[spec.feature_names], frame["outcome"])
    return spec, pipeline


CASES = [(f, t) for f in [*FAMILIES, *EXTRA_TREES] for t in ("binary", "multiclass")]
_FITTED: dict[tuple[str, str, str], tuple[UseCase, Pipeline]] = {}


def fitted(family: str, task: str = "binary", positive: str = "yes") -> tuple[UseCase, Pipeline]:
    """Fit once per test session: the tests read the pipelines, never change them."""
    key = (family, task, positive)
    if key not in _FITTED:
        _FITTED[key] = _fit(family, task, positive)
    return _FITTED[key]


def _background(task: str) -> pd.DataFrame:
    return (toy_frame(300, seed=7) if task == "binary" else _multiclass_frame(300, seed=7)).copy()


def _records(spec: UseCase, task: str, n: int = 60) -> list[dict[str, Any]]:
    frame = toy_frame(n, seed=11) if task == "binary" else _multiclass_frame(n, seed=11)
    records = api_records(spec, frame)
    records[0] = {**records[0], "income": None}  # a gap: the missing-value indicator is on
    return records


def _frame(spec: UseCase, records: list[dict[str, Any]]) -> pd.DataFrame:
    from tabops.scoring.records import records_to_frame

    return records_to_frame(spec, records)


@pytest.mark.parametrize(("family", "task"), CASES)
def test_contributions_add_up_to_the_models_raw_output(family: str, task: str) -> None:
    spec, pipeline = fitted(family, task)
    explainer = Explainer(spec, pipeline, _background(task))
    records = _records(spec, task)
    explanations = explainer.explain(records)
    frame = _frame(spec, records)
    boosting_or_linear = family in ("logistic_regression", "hist_gradient_boosting")
    raw = {c: model_output(pipeline, frame, c, boosting_or_linear) for c in spec.target.classes}
    for i, e in enumerate(explanations):
        assert abs(e.value - raw[e.output_class][i]) <= 1e-6
        assert list(e.contributions) == spec.feature_names
    assert explainer.max_error <= 1e-6
    assert explainer.path == "compiled"
    expected_scale = {
        ("logistic_regression", "binary"): "log_odds",
        ("hist_gradient_boosting", "binary"): "log_odds",
        ("logistic_regression", "multiclass"): "class_logit",
        ("hist_gradient_boosting", "multiclass"): "class_logit",
    }.get((family, task), "probability")
    assert {e.scale for e in explanations} == {expected_scale}
    assert {e.method for e in explanations} == {
        "linear" if family == "logistic_regression" else "tree_shap"
    }


@pytest.mark.parametrize("positive", ["yes", "no"])
def test_linear_contributions_are_coefficients_times_centred_values(positive: str) -> None:
    spec, pipeline = fitted("logistic_regression", positive=positive)
    background = _background("binary")
    explainer = Explainer(spec, pipeline, background)
    records = _records(spec, "binary")
    transform = pipeline[:-1]
    x = np.asarray(transform.transform(_frame(spec, records)))
    baseline = np.asarray(transform.transform(background[spec.feature_names])).mean(axis=0)
    model = pipeline[-1]
    sign = 1.0 if positive == str(model.classes_[1]) else -1.0
    coef, intercept = sign * model.coef_[0], sign * model.intercept_[0]
    want = fold_by_column_names(spec, pipeline, coef * (x - baseline))
    explanations = explainer.explain(records)
    got = np.array([list(e.contributions.values()) for e in explanations])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    for e in explanations:
        assert e.output_class == positive
        assert e.base_value == pytest.approx(intercept + coef @ baseline, abs=1e-12)


def test_positive_class_sets_the_sign_of_the_log_odds() -> None:
    records = _records(_spec("logistic_regression"), "binary")
    yes = Explainer(*fitted("logistic_regression", positive="yes"), _background("binary"))
    no = Explainer(*fitted("logistic_regression", positive="no"), _background("binary"))
    for a, b in zip(yes.explain(records), no.explain(records), strict=True):
        assert (a.output_class, b.output_class) == ("yes", "no")
        assert b.value == pytest.approx(-a.value, abs=1e-9)
        for name in a.contributions:
            assert b.contributions[name] == pytest.approx(-a.contributions[name], abs=1e-9)


@pytest.mark.parametrize(("family", "task"), [c for c in CASES if c[0] != "logistic_regression"])
def test_tree_contributions_equal_shap_on_the_pipelines_estimator(family: str, task: str) -> None:
    spec, pipeline = fitted(family, task)
    explainer = Explainer(spec, pipeline, _background(task))
    records = _records(spec, task)
    x = np.asarray(pipeline[:-1].transform(_frame(spec, records)))
    values = np.asarray(shap.TreeExplainer(pipeline[-1]).shap_values(x))
    classes = [str(c) for c in pipeline.classes_]
    for i, e in enumerate(explainer.explain(records)):
        if values.ndim == 2:  # binary boosting: log-odds of classes_[1]
            column = values[[i]] * (1 if e.output_class == classes[1] else -1)
        else:
            column = values[[i], :, classes.index(e.output_class)]
        want = fold_by_column_names(spec, pipeline, column)[0]
        np.testing.assert_allclose(list(e.contributions.values()), want, rtol=0, atol=1e-12)


def test_one_hot_columns_and_missing_indicator_fold_into_their_feature() -> None:
    spec, pipeline = fitted("logistic_regression")
    background = _background("binary")
    explainer = Explainer(spec, pipeline, background)
    names = [str(n) for n in pipeline[:-1].get_feature_names_out()]
    assert explainer.columns == [
        "age",
        "active",
        "income",
        "income",  # num_optional__missingindicator_income
        "plan",
        "plan",
        "plan",
    ]
    assert names[3] == "num_optional__missingindicator_income"
    transform, model = pipeline[:-1], pipeline[-1]
    baseline = np.asarray(transform.transform(background[spec.feature_names])).mean(axis=0)
    gap = {"age": 40, "income": None, "plan": "plus", "active": True}
    x = np.asarray(transform.transform(_frame(spec, [gap])))[0]
    terms = model.coef_[0] * (x - baseline)
    (e,) = explainer.explain([gap])
    assert x[3] > 0  # the (scaled) indicator is on
    assert e.contributions["income"] == pytest.approx(terms[2] + terms[3], abs=1e-12)
    assert e.contributions["plan"] == pytest.approx(terms[4:].sum(), abs=1e-12)
    assert len(e.contributions) == len(spec.features) < len(names)


def test_multiclass_explains_the_highest_scoring_class_or_the_one_asked() -> None:
    spec, pipeline = fitted("logistic_regression", "multiclass")
    explainer = Explainer(spec, pipeline, _background("multiclass"))
    records = _records(spec, "multiclass")
    predicted = [str(c) for c in pipeline.predict(_frame(spec, records))]
    assert [e.output_class for e in explainer.explain(records)] == predicted
    asked = explainer.explain(records[:2], classes=["low", "high"])
    assert [e.output_class for e in asked] == ["low", "high"]
    assert all(r.endswith("the score of Outcome low") for r in asked[0].reasons)
    with pytest.raises(ExplanationNotSupportedError):
        explainer.explain(records[:1], classes=["none"])


def test_a_family_without_an_exact_method_is_refused() -> None:
    spec, pipeline = fitted("logistic_regression")
    knn = build_pipeline(spec).set_params(model=KNeighborsClassifier())
    frame = toy_frame(200)
    knn.fit(frame[spec.feature_names], frame["outcome"])
    with pytest.raises(ExplanationNotSupportedError, match="KNeighborsClassifier"):
        Explainer(spec, knn, _background("binary"))
    loaded = LoadedModel(
        spec=spec,
        pipeline=knn,
        decision=Decision(classes=("no", "yes"), positive="yes", threshold=0.5),
        version="1",
        run_id="run",
        sha256="0" * 64,
        metrics={},
        reference=_background("binary"),
    )
    explainer, reason = load_explainer(loaded)
    assert explainer is None
    assert reason.startswith("no explanations: KNeighborsClassifier has no exact")
    loaded.pipeline = pipeline
    explainer, reason = load_explainer(loaded)
    assert explainer is not None
    assert reason.startswith("explanations: linear on the log_odds scale, compiled matrix")


def test_reasons_name_value_unit_level_and_direction() -> None:
    spec = _spec("logistic_regression")
    writer = ReasonWriter(spec, pd.DataFrame({"age": [20, 30, 40, 50, 60], "income": [1.0] * 5}))
    record = {"age": 85, "income": None, "plan": "pro", "active": False}
    contributions = {"age": 1.2, "income": -0.4, "plan": 0.0, "active": 0.7}
    assert writer.reasons(record, contributions, "yes", "log_odds", 3) == [
        "Age: 85 years (high) raised the chance that Outcome is yes",
        "Active: no raised the chance that Outcome is yes",
        "Income: not given lowered the chance that Outcome is yes",
    ]
    # a feature that contributed nothing is never a reason
    assert writer.reasons(record, contributions, "yes", "log_odds", 4)[3:] == []
    low = writer.reasons({**record, "age": 21}, {"age": -0.3}, "yes", "probability", 1)
    assert low == ["Age: 21 years (low) lowered the chance that Outcome is yes"]
    typical = writer.describe(spec.feature("age"), 40)
    assert typical == "Age: 40 years (typical)"
    assert writer.describe(spec.feature("plan"), "pro") == "Plan: pro"
    assert writer.describe(spec.feature("income"), 1234.5) == "Income: 1234.5 (high)"


def test_title_splits_words_and_keeps_acronyms() -> None:
    assert title("MonthlyIncome") == "Monthly income"
    assert title("prior_records") == "Prior records"
    assert title("G3") == "G3"
    assert title("churn") == "Churn"


def test_explanation_round_trips_through_json() -> None:
    spec, pipeline = fitted("hist_gradient_boosting")
    (e,) = Explainer(spec, pipeline, _background("binary")).explain(
        [{"age": 70, "income": 2500.0, "plan": "basic", "active": True}]
    )
    data = json.loads(json.dumps(e.as_dict()))
    assert set(data) == {"method", "scale", "class", "base_value", "value", "contributions"} | {
        "reasons"
    }
    assert Explanation.from_dict(data) == e
    assert data["value"] == pytest.approx(data["base_value"] + sum(data["contributions"].values()))
    assert len(e.reasons) == 3
    assert e.top(1)[0][0] == e.reasons[0].split(":")[0].lower()
    with pytest.raises(ValueError, match="unknown explanation"):
        Explanation.from_dict({**data, "scale": "odds"})


def test_spec_option_explain() -> None:
    assert parse_spec(spec_dict()).explain == "on_request"
    with pytest.raises(SpecError) as err:
        parse_spec(spec_dict(explain="sometimes"))
    assert [d.field for d in err.value.details] == ["explain"]
    always = parse_spec(spec_dict(explain="always"))
    never = parse_spec(spec_dict(explain="never"))
    on_request = parse_spec(spec_dict())
    assert should_explain(always, False) and should_explain(always, True)
    assert not should_explain(on_request, False) and should_explain(on_request, True)
    assert not should_explain(never, False)
    with pytest.raises(ExplanationNotSupportedError, match="explain: never") as refused:
        should_explain(never, True)
    assert [d.as_dict() for d in refused.value.details] == [
        {"field": "explain", "reason": "the use case's spec says explain: never"}
    ]
    assert refused.value.code == "explanation_not_supported"


def _explained(contributions: dict[str, float], scale: str = "log_odds") -> dict[str, Any]:
    return {"scale": scale, "contributions": contributions}


def test_global_view_ranks_live_influence_beside_training_importance() -> None:
    features = ["a", "b", "c"]
    window = [
        _explained({"a": 3.0, "b": -2.0, "c": 0.5}),
        _explained({"a": -1.0, "b": 2.0, "c": -0.5}),
        _explained({"a": 9.0, "b": 9.0, "c": 9.0}, scale="probability"),  # older family
        _explained({"a": 2.0, "b": 1.0, "c": 0.0}),
    ]
    same = pd.DataFrame({"feature": ["a", "b", "c"], "importance_mean": [0.3, 0.2, 0.01]})
    view = global_view(window, features, same)
    assert (view.explanations, view.left_out, view.scale) == (3, 1, "log_odds")
    assert [f.feature for f in view.features] == ["a", "b", "c"]
    assert [f.mean_abs_contribution for f in view.features] == [2.0, pytest.approx(5 / 3), 1 / 3]
    assert sum(f.share for f in view.features) == pytest.approx(1.0)
    assert view.rank_correlation == pytest.approx(1.0)
    assert view.shift == pytest.approx(0.0)
    reversed_ = global_view(window, features, {"a": 0.0, "b": 0.1, "c": 0.2})
    assert reversed_.shift == pytest.approx(1.0)
    assert [f.training_rank for f in reversed_.features] == [3.0, 2.0, 1.0]
    assert json.loads(json.dumps(view.as_dict()))["features"][0]["feature"] == "a"


def test_global_view_without_explanations_or_importances_has_no_shift() -> None:
    empty = global_view([], ["a", "b"], {"a": 0.2, "b": 0.1})
    assert (empty.explanations, empty.rank_correlation, empty.shift) == (0, None, None)
    assert [f.mean_abs_contribution for f in empty.features] == [0.0, 0.0]
    e = Explanation("linear", "log_odds", "yes", 0.1, {"a": 1.0, "b": 0.5})
    alone = global_view([e], ["a", "b"])
    assert (alone.rank_correlation, alone.shift) == (None, None)
    assert [f.training_importance for f in alone.features] == [None, None]
    flat = global_view([e], ["a", "b"], {"a": 0.1, "b": 0.1})  # equal importances: no ranking
    assert flat.shift is None


def test_a_preprocessing_the_compiled_path_lacks_is_explained_through_the_pipeline() -> None:
    spec = _spec("logistic_regression")
    frame = toy_frame(300)
    pipeline = build_pipeline(spec).set_params(preprocess__num__scale=MinMaxScaler())
    pipeline.fit(frame[spec.feature_names], frame["outcome"])
    background = _background("binary")
    explainer = Explainer(spec, pipeline, background)
    assert explainer.path == "pipeline"  # the compiled preprocessor has no MinMaxScaler
    records = _records(spec, "binary")
    transform, model = pipeline[:-1], pipeline[-1]
    x = np.asarray(transform.transform(_frame(spec, records)))
    baseline = np.asarray(transform.transform(background[spec.feature_names])).mean(axis=0)
    want = fold_by_column_names(spec, pipeline, model.coef_[0] * (x - baseline))
    explanations = explainer.explain(records)
    got = np.array([list(e.contributions.values()) for e in explanations])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    raw = model_output(pipeline, _frame(spec, records), "yes", raw_scores=True)
    np.testing.assert_allclose([e.value for e in explanations], raw, rtol=0, atol=1e-9)


def test_reasons_use_the_specs_title_of_a_feature() -> None:
    features = [dict(f) for f in spec_dict()["features"]]
    features[0]["title"] = "Customer age"
    spec = parse_spec(spec_dict(features=features))
    writer = ReasonWriter(spec, pd.DataFrame({"age": [20, 30, 40, 50, 60]}))
    assert writer.reasons({"age": 85}, {"age": 1.0}, "yes", "log_odds", 1) == [
        "Customer age: 85 years (high) raised the chance that Outcome is yes"
    ]
    with pytest.raises(SpecError):
        parse_spec(spec_dict(features=[{**features[0], "title": ""}, *features[1:]]))
