"""Typed training tables, one per use case, with columns derived from the spec.

A training table holds the entity id (if the spec has one), every feature in its own typed
column and the target, plus bookkeeping columns: a surrogate key that fixes row order (so
training is reproducible on any database), when the row arrived and where it came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
)
from sqlalchemy.types import TypeEngine

from tabops.data.datasets import training_dtypes
from tabops.errors import (
    DataValidationError,
    FieldIssue,
    SpecError,
    TableNotEmptyError,
    TrainingError,
)
from tabops.spec.features import kind_of
from tabops.spec.schema import UseCase

__all__ = [
    "ROW_KEY",
    "count_rows",
    "fetch_entity",
    "ingest_rows",
    "insert_rows",
    "read_training_frame",
    "seed_table",
    "table_name",
    "training_table",
]

ROW_KEY = "_row_key"
INGESTED_AT = "_ingested_at"
SOURCE = "_source"
_CHUNK = 1000


def table_name(spec: UseCase) -> str:
    """Name of the use case's training table."""
    return f"training_{spec.name}"


def training_table(spec: UseCase, metadata: MetaData | None = None) -> Table:
    """The SQLAlchemy table of the use case's training data, derived from its spec."""
    metadata = metadata if metadata is not None else MetaData()
    names = {ROW_KEY, INGESTED_AT, SOURCE}
    clash = names & ({f.name for f in spec.features} | {spec.target.name})
    if clash:
        raise SpecError(f"use case '{spec.name}': {', '.join(clash)} is a reserved column name")
    columns: list[Column[Any]] = [
        Column(ROW_KEY, Integer, primary_key=True, autoincrement=True),
    ]
    if spec.entity_id is not None:
        id_type: TypeEngine[Any] = BigInteger() if spec.entity_id.type == "integer" else String(255)
        columns.append(Column(spec.entity_id.name, id_type, nullable=False, unique=True))
    for feature in spec.features:
        columns.append(
            Column(
                feature.name,
                kind_of(feature).sql_type(feature),
                nullable=not feature.required,
                comment=feature.description or None,
            )
        )
    longest = max(len(c) for c in spec.target.classes)
    columns.append(Column(spec.target.name, String(longest), nullable=False))
    columns.append(Column(INGESTED_AT, DateTime(timezone=True), nullable=False))
    columns.append(Column(SOURCE, String(255), nullable=False))
    return Table(table_name(spec), metadata, *columns, comment=spec.title)


def count_rows(engine: Engine, spec: UseCase) -> int:
    """Rows in the use case's training table (0 if it does not exist)."""
    if not inspect(engine).has_table(table_name(spec)):
        return 0
    table = training_table(spec)
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    columns = list(frame.columns)
    for row in frame.itertuples(index=False, name=None):
        yield {
            c: (None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v)
            for c, v in zip(columns, row, strict=True)
        }


def insert_rows(
    engine: Engine,
    spec: UseCase,
    frame: pd.DataFrame,
    source: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append rows (already checked by ``validate_frame``) in one transaction.

    Args:
        engine: The database.
        spec: The use case.
        frame: Typed rows: entity id, features, target.
        source: Where the rows came from (kept in the table).
        progress: Called with the number of rows written after each chunk.

    Returns:
        The number of rows written.
    """
    table = training_table(spec)
    table.metadata.create_all(engine)
    now = datetime.now(UTC)
    rows = list(_records(frame))
    for row in rows:
        row[INGESTED_AT] = now
        row[SOURCE] = source
        for key, value in row.items():
            if hasattr(value, "item"):  # numpy scalar -> Python value for every driver
                row[key] = value.item()
    with engine.begin() as conn:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            conn.execute(table.insert(), chunk)
            if progress is not None:
                progress(len(chunk))
    return len(rows)


def seed_table(
    engine: Engine,
    spec: UseCase,
    frame: pd.DataFrame,
    source: str,
    replace: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Create the training table and fill it with the seed rows.

    Raises:
        TableNotEmptyError: the table already holds rows and ``replace`` is false.
    """
    table = training_table(spec)
    existing = count_rows(engine, spec)
    if existing and not replace:
        raise TableNotEmptyError(
            f"training table '{table.name}' already holds {existing} rows "
            "(use --replace to drop them and seed again)"
        )
    if replace:
        table.drop(engine, checkfirst=True)
    return insert_rows(engine, spec, frame, source, progress)


def ingest_rows(engine: Engine, spec: UseCase, frame: pd.DataFrame, source: str) -> int:
    """Append checked rows to an existing training table, all or nothing.

    Raises:
        DataValidationError: an entity id is already in the table.
        TrainingError: the table does not exist yet (seed it first).
    """
    table = training_table(spec)
    if not inspect(engine).has_table(table.name):
        raise TrainingError(
            f"'{spec.name}' has no training table yet: run `tabops seed {spec.name}`"
        )
    if spec.entity_id is not None and not frame.empty:
        ids = [v.item() if hasattr(v, "item") else v for v in frame[spec.entity_id.name]]
        column = table.c[spec.entity_id.name]
        with engine.connect() as conn:
            taken: set[object] = set(conn.execute(select(column).where(column.in_(ids))).scalars())
        if taken:
            rows = [
                FieldIssue(spec.entity_id.name, f"id '{v}' is already in the table", row=i + 2)
                for i, v in enumerate(ids)
                if v in taken
            ]
            raise DataValidationError(f"{len(rows)} row(s) repeat ids of the training table", rows)
    return insert_rows(engine, spec, frame, source)


def read_training_frame(engine: Engine, spec: UseCase) -> pd.DataFrame:
    """The whole training table in row order: features typed for scikit-learn, plus the
    target as strings."""
    table = training_table(spec)
    if not inspect(engine).has_table(table.name):
        return pd.DataFrame(columns=[*spec.feature_names, spec.target.name])
    columns = [table.c[name] for name in [*spec.feature_names, spec.target.name]]
    with engine.connect() as conn:
        frame = pd.read_sql(select(*columns).order_by(table.c[ROW_KEY]), conn)
    out = training_dtypes(spec, frame)
    out[spec.target.name] = frame[spec.target.name].astype(str)
    return out


def fetch_entity(engine: Engine, spec: UseCase, entity_id: str) -> dict[str, Any] | None:
    """The features of the row with this entity id, or None if there is none."""
    if spec.entity_id is None:
        return None
    table = training_table(spec)
    key: int | str = entity_id
    if spec.entity_id.type == "integer":
        try:
            key = int(entity_id)
        except ValueError:
            return None
    columns = [table.c[name] for name in spec.feature_names]
    with engine.connect() as conn:
        row = conn.execute(select(*columns).where(table.c[spec.entity_id.name] == key)).first()
    return dict(row._mapping) if row is not None else None
