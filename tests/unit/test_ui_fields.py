"""What the web UI derives from a spec as the API describes it: labels, help, bounds, and
CSV cells typed per feature."""

from __future__ import annotations

import pandas as pd
import pytest

from tabops.errors import SpecError
from tabops.spec.files import parse_spec
from tabops.ui.fields import RowIssue, caption, csv_records, display, integer_bounds, label_text
from tests.factories import spec_dict

SPEC = parse_spec(
    spec_dict(
        target={
            "name": "outcome",
            "classes": ["no", "yes"],
            "positive": "yes",
            "labels": {"yes": "Will buy"},
        }
    )
).model_dump(mode="json")


def test_display_labels_come_from_the_spec() -> None:
    assert display(SPEC, "yes") == "Will buy"
    assert display(SPEC, "no") == "no"  # no label given: the class itself


def test_labels_of_unknown_classes_are_refused() -> None:
    bad = spec_dict(
        target={
            "name": "outcome",
            "classes": ["no", "yes"],
            "positive": "yes",
            "labels": {"y": "Y"},
        }
    )
    with pytest.raises(SpecError) as info:
        parse_spec(bad)
    assert "unknown classes: y" in info.value.details[0].reason


def test_label_help_and_bounds() -> None:
    age, income = SPEC["features"][0], SPEC["features"][1]
    assert label_text(age) == "age (years)"
    assert caption(age) == "Accepted: 18 to 100."
    assert "Optional" in caption(income)
    assert integer_bounds({"min": 0.5, "max": 9.5}) == (1, 9)


def test_csv_cells_are_typed_per_feature() -> None:
    frame = pd.DataFrame(
        {
            "customer": ["c1", "c2", "c3", "c4"],
            "age": ["30", "41.0", "abc", "2.5"],
            "income": ["1200.5", "", "10", "NA"],
            "plan": ["pro", "basic", "plus", "plus"],
            "active": ["yes", "0", "true", "maybe"],
        }
    )
    records, issues, missing = csv_records(frame, SPEC)
    assert missing == []
    assert records == [
        (0, {"age": 30, "income": 1200.5, "plan": "pro", "active": True}),
        (1, {"age": 41, "income": None, "plan": "basic", "active": False}),
    ]
    assert issues == [
        RowIssue(2, "age", "'abc' is not a number"),
        RowIssue(3, "age", "'2.5' is not a whole number"),
        RowIssue(3, "active", "'maybe' is not yes/no (true, false, yes, no, 1, 0)"),
    ]


def test_a_missing_required_column_is_named() -> None:
    frame = pd.DataFrame({"age": ["30"], "plan": ["pro"]})
    assert csv_records(frame, SPEC) == ([], [], ["active"])
