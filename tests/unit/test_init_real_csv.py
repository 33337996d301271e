"""`tabops init` on the CSV files people really have: other encodings and separators,
missing-value markers, decimal commas, accents, repeated headers, unlabelled rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tabops.config import Settings
from tabops.data.datasets import load_source
from tabops.data.scaffold import infer_spec, write_starter_spec
from tabops.errors import DataNotFoundError
from tabops.spec.files import load_usecase


def _features(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in spec["features"]}


def _seed(usecases: Path, name: str, tmp_path: Path) -> Any:
    spec = load_usecase(usecases, name)
    return load_source(spec, Settings(var_dir=tmp_path / "var", usecases_dir=usecases))


def _rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        age = int(rng.integers(18, 70))
        out.append(
            {
                "age": age,
                "balance": round(float(rng.normal(500, 200)), 2),
                "year": int(rng.integers(2000, 2021)),
                "children": int(rng.integers(0, 2)),
                "hours": 35,
                "state": f"S{i % 51:02d}",
                "student": "oui" if rng.random() < 0.3 else "non",
                "left": "yes" if rng.random() < 1 / (1 + np.exp(-(age - 45) / 8)) else "no",
            }
        )
    return out


def _write(path: Path, header: list[str], rows: list[list[str]], sep: str, **kw: Any) -> Path:
    text = "\r\n".join(sep.join(r) for r in [header, *rows]) + "\r\n"
    path.write_bytes(text.encode(kw.get("encoding", "utf-8")))
    return path


def test_semicolons_bom_crlf_markers_decimal_commas_and_accents(tmp_path: Path) -> None:
    header = ["Âge", "Solde (€)", "Étudiant ?", "year", "left"]
    rows = []
    for i, r in enumerate(_rows(120)):
        age = "?" if i % 17 == 0 else str(r["age"])
        balance = "-" if i % 13 == 0 else f"{r['balance']:.2f}".replace(".", ",")
        student = "N/A" if i % 11 == 0 else r["student"]
        rows.append([age, balance, student, str(r["year"]), r["left"]])
    source = tmp_path / "clients.csv"
    source.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(";".join(x) for x in [header, *rows]).encode())
    usecases = tmp_path / "usecases"
    path, notes = write_starter_spec(usecases, "clients", source, "left")
    spec, _ = infer_spec("clients", source, "left")
    features = _features(spec)
    assert set(features) == {"Age", "solde", "etudiant", "year"}
    assert features["Age"]["column"] == "Âge" and features["Age"]["type"] == "integer"
    assert features["solde"]["type"] == "number" and features["solde"]["required"] is False
    assert features["etudiant"] == {
        "name": "etudiant",
        "type": "category",
        "values": ["non", "oui"],
        "required": False,
        "column": "Étudiant ?",
        "description": "",
    }
    assert spec["data"]["separator"] == ";"
    assert spec["data"]["decimal"] == ","
    assert spec["data"]["missing_values"] == ["-", "?"]
    assert "'?' read as a missing value (in Âge)" in notes
    assert "numbers use a decimal comma (3,14): data.decimal set to ','" in notes
    written = path.read_text("utf-8")
    assert "# inferred: observed" in written

    seeded = _seed(usecases, "clients", tmp_path).frame
    assert len(seeded) == 120
    assert seeded["Age"].isna().sum() == len(range(0, 120, 17))
    assert seeded["solde"].isna().sum() == len(range(0, 120, 13))
    assert (
        seeded["solde"].dropna().between(features["solde"]["min"], features["solde"]["max"]).all()
    )


def test_latin1_file_is_detected_and_seeded_the_same_way(tmp_path: Path) -> None:
    rows = [
        [str(r["age"]), "Célibataire" if r["student"] == "oui" else "Marié", r["left"]]
        for r in _rows(60)
    ]
    source = _write(tmp_path / "staff.csv", ["âge", "état", "left"], rows, ",", encoding="latin-1")
    usecases = tmp_path / "usecases"
    _, notes = write_starter_spec(usecases, "staff", source, "left")
    spec = load_usecase(usecases, "staff")
    assert spec.data.encoding == "cp1252"
    assert "file read as cp1252 (it is not UTF-8): data.encoding set" in notes
    assert spec.feature("etat").values == ["Célibataire", "Marié"]
    assert set(_seed(usecases, "staff", tmp_path).frame["etat"]) == {"Célibataire", "Marié"}


def test_wrong_encoding_at_seed_names_the_one_to_set(tmp_path: Path) -> None:
    rows = [[str(r["age"]), "é" if r["student"] == "oui" else "e", r["left"]] for r in _rows(40)]
    source = _write(tmp_path / "staff.csv", ["age", "x", "left"], rows, ",", encoding="latin-1")
    usecases = tmp_path / "usecases"
    path, _ = write_starter_spec(usecases, "staff", source, "left")
    path.write_text(path.read_text().replace("encoding: cp1252", "encoding: utf-8"))
    with pytest.raises(DataNotFoundError, match="it is not utf-8 text; it looks like cp1252"):
        _seed(usecases, "staff", tmp_path)


def test_bounds_types_caps_headers_and_unlabelled_rows(tmp_path: Path) -> None:
    header = ["age", "balance", "year", "children", "hours", "state", "age", "left"]
    rows = []
    for i, r in enumerate(_rows(300)):
        left = "" if i in (5, 9, 200) else r["left"]
        rows.append([str(r[k]) for k in header[:6]] + [str(r["age"]), left])
    source = _write(tmp_path / "bank.csv", header, rows, ",")
    spec, notes = infer_spec("bank", source, "left")
    features = _features(spec)
    assert features["year"]["max"] > 2020 and features["year"]["min"] < 2000
    assert features["balance"]["max"] > max(r["balance"] for r in _rows(300))
    assert features["age"]["min"] == 0  # widened, but not below zero
    assert features["children"]["type"] == "integer"  # 0/1 counts are not booleans
    assert any("'children' holds only 0 and 1" in n for n in notes)
    assert "hours" not in features
    assert any(n.startswith("column 'hours' left out: the same value (35)") for n in notes)
    assert len(features["state"]["values"]) == 51
    assert any("header 'age' appears 2 times: the repeats are read as 'age.1'" in n for n in notes)
    assert "3 row(s) have no value of the target 'left': seeding leaves them out" in notes
    assert any(n.startswith("bounds of ") and "# inferred" in n for n in notes)

    capped, capped_notes = infer_spec("bank", source, "left", max_categories=50)
    assert "state" not in _features(capped)
    assert any("over the category cap of 50 (--max-categories" in n for n in capped_notes)


def test_a_column_that_gives_the_target_away_is_noted(tmp_path: Path) -> None:
    rows = [
        [str(r["age"]), "closed" if r["left"] == "yes" else "open", r["left"]] for r in _rows(200)
    ]
    source = _write(tmp_path / "acc.csv", ["age", "account_status", "left"], rows, ",")
    _, notes = infer_spec("acc", source, "left")
    leaks = [n for n in notes if "possible leakage" in n]
    assert len(leaks) == 1
    assert leaks[0].startswith("column 'account_status' alone predicts 'left' with ROC AUC 1.000")
