"""Targets derived from categories, and warnings about features that give the target away."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabops.config import Settings
from tabops.data.datasets import from_source_columns, load_source, training_dtypes, validate_frame
from tabops.errors import DataValidationError, SpecError
from tabops.spec.files import parse_spec
from tabops.training.fit import fit_usecase
from tabops.training.leakage import leakage_warnings
from tests.factories import spec_dict, toy_frame

STATUS_MAP = {
    "current": "no",
    "paid_off": "no",
    "grace": "no",
    "late": "yes",
    "charged_off": "yes",
    "default": "yes",
}


def _derived(**derive: Any) -> Any:
    target = {"name": "defaulted", "classes": ["no", "yes"], "positive": "yes", "derive": derive}
    return parse_spec(spec_dict(target=target, entity_id=None))


def test_derive_maps_each_category_to_a_class() -> None:
    spec = _derived(column="status", map=STATUS_MAP)
    raw = toy_frame(6).drop(columns=["outcome", "customer"])
    raw["status"] = list(STATUS_MAP)
    out = from_source_columns(spec, raw.astype(str), where="test")
    assert list(out["defaulted"]) == ["no", "no", "no", "yes", "yes", "yes"]


def test_an_unmapped_value_is_reported_with_its_row() -> None:
    spec = _derived(column="status", map=STATUS_MAP)
    raw = toy_frame(3).drop(columns=["outcome", "customer"]).astype(str)
    raw["status"] = ["current", "written_off", "late"]
    with pytest.raises(DataValidationError) as caught:
        from_source_columns(spec, raw, where="test")
    issue = caught.value.details[0]
    assert (issue.field, issue.row) == ("status", 2)
    assert "'written_off' is not in target.derive.map" in issue.reason


@pytest.mark.parametrize(
    ("derive", "message"),
    [
        ({"column": "s", "map": {"a": "no", "b": "maybe"}}, "classes not in target.classes"),
        ({"column": "s", "map": {"a": "no", "b": "no"}}, "gives no value the class"),
        ({"column": "s", "threshold": 1, "map": {"a": "no"}}, "either 'threshold'"),
        ({"column": "s", "threshold": 1}, "needs 'negative'"),
    ],
)
def test_derive_rules_are_checked(derive: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _derived(**derive)


def test_rows_without_a_label_are_left_out_and_counted(tmp_path: Path) -> None:
    rows = toy_frame(40)
    rows.loc[[3, 7], "outcome"] = None
    rows.to_csv(tmp_path / "toy.csv", index=False)
    spec = parse_spec(spec_dict(data={"files": ["toy.csv"], "dir": str(tmp_path)}))
    source = load_source(spec, Settings(var_dir=tmp_path / "var", usecases_dir=tmp_path))
    assert len(source.frame) == 38
    assert source.notes == [
        "2 row(s) without a value of the target 'outcome' left out (nothing to learn from them)"
    ]


def _frame(spec: Any, rows: pd.DataFrame) -> pd.DataFrame:
    typed = validate_frame(spec, rows)
    frame = training_dtypes(spec, typed)
    frame[spec.target.name] = typed[spec.target.name].astype(str)
    return frame


def test_a_feature_that_is_the_target_in_disguise_is_reported() -> None:
    raw = spec_dict(training={"cv_folds": 3, "reference_size": 50})
    raw["features"] = [
        *raw["features"],
        {"name": "closed_reason", "type": "category", "values": ["none", "left"]},
    ]
    spec = parse_spec(raw)
    rows = toy_frame(300)
    rows["closed_reason"] = np.where(rows["outcome"] == "yes", "left", "none")
    trained = fit_usecase(spec, _frame(spec, rows))
    assert len(trained.warnings) == 1
    assert trained.warnings[0].startswith(
        "feature 'closed_reason' alone predicts the target with ROC AUC 1.000"
    )
    plain = parse_spec(spec_dict(training=raw["training"]))
    honest = fit_usecase(plain, _frame(plain, toy_frame(300)))
    assert honest.warnings == []


def test_the_derive_source_kept_as_a_feature_is_reported() -> None:
    raw = spec_dict(
        target={
            "name": "defaulted",
            "classes": ["no", "yes"],
            "positive": "yes",
            "derive": {"column": "age", "threshold": 60, "negative": "no"},
        }
    )
    spec = parse_spec(raw)
    rows = toy_frame(200)
    rows["defaulted"] = np.where(rows["age"] >= 60, "yes", "no")
    warnings = leakage_warnings(spec, _frame(spec, rows.drop(columns=["outcome"])))
    assert "feature 'age' is the column the target is derived from" in warnings[0]
    assert "feature 'age' alone predicts the target with ROC AUC 1.000" in warnings[1]


def test_unique_ids_as_a_category_do_not_look_like_leakage() -> None:
    from tabops.training.leakage import single_feature_auc

    rng = np.random.default_rng(0)
    hit = rng.random(400) < 0.3
    ids = pd.Series([f"id{i}" for i in range(400)])
    auc = single_feature_auc(ids, numeric=False, hit=hit)
    assert auc is not None and auc < 0.6


def test_a_feature_that_sets_one_class_apart_is_no_leak_but_a_copy_of_the_target_is() -> None:
    from tabops.training.leakage import leaky_columns

    rng = np.random.default_rng(1)
    species = pd.Series(rng.choice(["setosa", "versicolor", "virginica"], 300))
    petal = species.map({"setosa": 1.0, "versicolor": 4.0, "virginica": 5.0}) + rng.normal(
        0, 0.6, 300
    ) * (species != "setosa")
    copy = species.map({"setosa": "s", "versicolor": "ve", "virginica": "vi"})
    found = leaky_columns(
        {"petal": (petal, True), "copy": (copy, False)},
        species,
        ["setosa", "versicolor", "virginica"],
    )
    assert [name for name, _ in found] == ["copy"]
