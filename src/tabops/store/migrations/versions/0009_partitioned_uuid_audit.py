"""PostgreSQL: audit tables partitioned by month, with native uuid ids

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

The predictions table is meant to grow for years (one row per prediction). On
PostgreSQL, ``prediction_requests`` and ``predictions`` become tables partitioned by range
of their UUIDv7 id, one partition a month plus a default one (see
``tabops.store.partitions``), so that retention drops a month instead of deleting its rows
and each month's indexes stay small. Their ids (and ``feedback.prediction_id``) become
native ``uuid``: 16 bytes instead of 37, in the rows and in every index that holds them.
Two indexes are not recreated: ``(usecase, label)`` and ``(usecase, model_version,
created_at)``. The queries that filter on label or version (listings, the monitor's live
window, the shadow comparison) all ask for the newest rows first, which the primary key
gives in order, newest partition first; those indexes could not, and cost a third of
each row's insert. Nor are the two foreign keys into the partitioned tables recreated (a
partition drop would have to check every referencing row; the audit writer and the
feedback route keep them true).

The rows are copied into the new tables: on a large trail this migration takes a while
(it runs in one transaction, so it either happens or does not). SQLite is unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import op
from sqlalchemy import text

from tabops.store.partitions import AHEAD, PARTITIONED, Month, create_month, month_of, months

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_REQUEST_COLUMNS = """
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    usecase VARCHAR(63) NOT NULL,
    endpoint VARCHAR(255) NOT NULL,
    caller VARCHAR(255),
    n_records INTEGER NOT NULL,
    request_id VARCHAR(128),
    model_version VARCHAR(32) NOT NULL,
    latency_ms FLOAT NOT NULL"""

_PREDICTION_COLUMNS = """
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    usecase VARCHAR(63) NOT NULL,
    model_version VARCHAR(32) NOT NULL,
    features JSON NOT NULL,
    label VARCHAR(255) NOT NULL,
    probabilities JSON NOT NULL,
    score FLOAT NOT NULL,
    threshold FLOAT,
    latency_ms FLOAT NOT NULL,
    entity_id VARCHAR(64),
    shadow BOOLEAN DEFAULT false NOT NULL,
    shadow_of {id},
    explanation JSON"""

_PREDICTION_NAMES = (
    "id, request_id, created_at, usecase, model_version, features, label, probabilities, "
    "score, threshold, latency_ms, entity_id, shadow, shadow_of, explanation"
)
_REQUEST_NAMES = (
    "id, created_at, usecase, endpoint, caller, n_records, request_id, model_version, latency_ms"
)


def _indexes(before: bool) -> list[str]:
    """The indexes of 0009 (``before``: those of 0008)."""
    out = [
        "CREATE INDEX ix_prediction_requests_usecase_created_at "
        "ON prediction_requests (usecase, created_at)",
        "CREATE INDEX ix_predictions_usecase_created_at ON predictions (usecase, created_at)",
        "CREATE INDEX ix_predictions_request_id ON predictions (request_id)",
        "CREATE INDEX ix_predictions_entity_id ON predictions (entity_id) "
        "WHERE entity_id IS NOT NULL",
        "CREATE INDEX ix_predictions_shadow_of ON predictions (shadow_of) "
        "WHERE shadow_of IS NOT NULL",
    ]
    if before:
        out.append("CREATE INDEX ix_predictions_usecase_label ON predictions (usecase, label)")
        out.append(
            "CREATE INDEX ix_predictions_usecase_model_version_created_at "
            "ON predictions (usecase, model_version, created_at)"
        )
    return out


def _set_aside(suffix: str) -> None:
    """Rename the two tables and their indexes (and so their constraints) out of the way."""
    for table in PARTITIONED:
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_{suffix}")
        op.execute(
            f"""
            DO $$ DECLARE r record; BEGIN
              FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                       WHERE i.indrelid = '{table}_{suffix}'::regclass LOOP
                EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, r.relname || '_{suffix}');
              END LOOP;
            END $$"""
        )


def _months_of_ids(table: str) -> list[Month]:
    """The months of the oldest and newest UUIDv7 in a table (none when it is empty or
    its ids are not UUIDv7: those rows go to the default partition)."""
    bind = op.get_bind()
    low, high = bind.execute(text(f"SELECT min(id::text), max(id::text) FROM {table}")).one()
    found = []
    for value in (low, high):
        if isinstance(value, str) and len(value) == 36 and value[14] == "7":
            ms = int(value[:8] + value[9:13], 16)
            found.append(month_of(datetime.fromtimestamp(ms / 1000, UTC)))
    return found


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE feedback DROP CONSTRAINT fk_feedback_prediction_id_predictions")
    _set_aside("0008")
    op.execute(
        "CREATE TABLE prediction_requests (id UUID NOT NULL,"
        f"{_REQUEST_COLUMNS},\n    CONSTRAINT pk_prediction_requests PRIMARY KEY (id)"
        ") PARTITION BY RANGE (id)"
    )
    op.execute(
        "CREATE TABLE predictions (id UUID NOT NULL, request_id UUID NOT NULL,"
        f"{_PREDICTION_COLUMNS.format(id='UUID')},\n"
        "    CONSTRAINT pk_predictions PRIMARY KEY (id)) PARTITION BY RANGE (id)"
    )
    for statement in _indexes(before=False):
        op.execute(statement)
    now = month_of(datetime.now(UTC))
    seen = [now] + _months_of_ids("prediction_requests_0008") + _months_of_ids("predictions_0008")
    for month in months(min(seen), max([now.shift(AHEAD), *seen])):
        for table in PARTITIONED:
            create_month(bind, table, month)
    for table in PARTITIONED:
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    op.execute(
        f"INSERT INTO prediction_requests ({_REQUEST_NAMES}) "
        f"SELECT id::uuid, {_REQUEST_NAMES.split(', ', 1)[1]} FROM prediction_requests_0008"
    )
    op.execute(
        f"INSERT INTO predictions ({_PREDICTION_NAMES}) "
        "SELECT id::uuid, request_id::uuid, created_at, usecase, model_version, features, "
        "label, probabilities, score, threshold, latency_ms, entity_id, shadow, "
        "shadow_of::uuid, explanation FROM predictions_0008"
    )
    op.execute("DROP TABLE predictions_0008")
    op.execute("DROP TABLE prediction_requests_0008")
    op.execute(
        "ALTER TABLE feedback ALTER COLUMN prediction_id TYPE UUID USING prediction_id::uuid"
    )
    op.execute("ANALYZE prediction_requests")
    op.execute("ANALYZE predictions")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE feedback ALTER COLUMN prediction_id TYPE VARCHAR(36) USING prediction_id::text"
    )
    _set_aside("0009")
    op.execute(
        "CREATE TABLE prediction_requests (id VARCHAR(36) NOT NULL,"
        f"{_REQUEST_COLUMNS},\n    CONSTRAINT pk_prediction_requests PRIMARY KEY (id))"
    )
    op.execute(
        "CREATE TABLE predictions (id VARCHAR(36) NOT NULL, request_id VARCHAR(36) NOT NULL,"
        f"{_PREDICTION_COLUMNS.format(id='VARCHAR(36)')},\n"
        "    CONSTRAINT pk_predictions PRIMARY KEY (id),\n"
        "    CONSTRAINT fk_predictions_request_id_prediction_requests FOREIGN KEY (request_id) "
        "REFERENCES prediction_requests (id) ON DELETE CASCADE)"
    )
    for statement in _indexes(before=True):
        op.execute(statement)
    op.execute(
        f"INSERT INTO prediction_requests ({_REQUEST_NAMES}) "
        f"SELECT id::text, {_REQUEST_NAMES.split(', ', 1)[1]} FROM prediction_requests_0009"
    )
    op.execute(
        f"INSERT INTO predictions ({_PREDICTION_NAMES}) "
        "SELECT id::text, request_id::text, created_at, usecase, model_version, features, "
        "label, probabilities, score, threshold, latency_ms, entity_id, shadow, "
        "shadow_of::text, explanation FROM predictions_0009"
    )
    op.execute("DROP TABLE predictions_0009")  # and its partitions
    op.execute("DROP TABLE prediction_requests_0009")
    op.execute(
        "ALTER TABLE feedback ADD CONSTRAINT fk_feedback_prediction_id_predictions "
        "FOREIGN KEY (prediction_id) REFERENCES predictions (id) ON DELETE CASCADE"
    )
