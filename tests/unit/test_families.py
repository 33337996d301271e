"""The model-family registry: the only list of families, read by the spec, the API,
training, the model registry's skops trust list and the compiled scorer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from tabops.api.schemas import ModelOverride
from tabops.errors import SpecError
from tabops.spec.files import parse_spec
from tabops.spec.schema import ModelSpec
from tabops.training.estimators import (
    FAMILIES,
    build_estimator,
    family_of,
    skops_trusted_types,
)
from tabops.training.pipeline import build_pipeline
from tests.factories import spec_dict


def test_spec_and_api_accept_exactly_the_registered_families() -> None:
    for name in FAMILIES:
        assert parse_spec(spec_dict(model={"family": name})).model.family == name
        assert ModelOverride(family=name).family == name
    for schema in (ModelSpec.model_json_schema(), ModelOverride.model_json_schema()):
        family = schema["properties"]["family"]
        enums = [family.get("enum")] + [o.get("enum") for o in family.get("anyOf", [])]
        assert list(FAMILIES) in enums
    with pytest.raises(ValidationError, match="unknown model family 'svm'"):
        ModelOverride(family="svm")


def test_unknown_family_is_a_spec_error_never_a_default() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec_dict(model={"family": "svm"}))
    (detail,) = info.value.details
    assert detail.field == "model.family"
    assert all(name in detail.reason for name in FAMILIES)
    # a spec copied without validation (as training overrides are) still cannot fall through
    spec = parse_spec(spec_dict())
    rogue = spec.model_copy(update={"model": spec.model.model_copy(update={"family": "svm"})})
    with pytest.raises(SpecError, match="unknown model family 'svm'"):
        build_pipeline(rogue)
    with pytest.raises(SpecError, match="unknown parameter"):
        build_estimator("logistic_regression", 0, {"n_estimators": 3}, "toy")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_builds_its_estimator_and_is_recognised(name: str) -> None:
    family = FAMILIES[name]
    estimator = build_estimator(name, 7, {}, "toy")
    assert type(estimator) is family.estimator
    assert family_of(estimator) is family
    assert set(family.trusted_types) <= set(skops_trusted_types())


def test_subclasses_belong_to_their_parent_family_and_others_to_none() -> None:
    class Tuned(LogisticRegression):
        pass

    assert family_of(Tuned()) is FAMILIES["logistic_regression"]
    assert family_of(DummyClassifier()) is None
