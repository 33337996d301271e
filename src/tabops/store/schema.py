"""The audit store's tables (managed by Alembic; see ``store/migrations``).

``prediction_requests`` has one row per HTTP call; ``predictions`` one per scored record;
``feedback`` one per ground-truth label received (history kept, the latest wins). Features
are stored as JSON, with typed, indexed columns for what is queried.

On PostgreSQL (migration 0009) ``prediction_requests`` and ``predictions`` are partitioned
by month of their UUIDv7 id (:mod:`tabops.store.partitions`), their ids are native
``uuid``, and the two foreign keys into them are not declared there (a partition drop must
not check every referencing row): the audit writer writes a request and its predictions in
one transaction, and feedback is accepted only for a recorded prediction. Nor has
PostgreSQL the ``(usecase, label)`` and ``(usecase, model_version, created_at)`` indexes:
the queries filtered by label or version ask for the newest rows first, which the
primary key gives in order.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.dialects import postgresql

__all__ = [
    "api_keys",
    "drift_runs",
    "feedback",
    "metadata",
    "prediction_requests",
    "predictions",
    "training_jobs",
]

Id = String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
"""A UUIDv7 as its 36-character text: native ``uuid`` (16 bytes) on PostgreSQL since
migration 0009, text on SQLite. Values are always canonical lowercase strings in Python."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

prediction_requests = Table(
    "prediction_requests",
    metadata,
    Column("id", Id, primary_key=True, comment="UUIDv7, time-ordered"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("usecase", String(63), nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("caller", String(255), nullable=True, comment="API key name or client address"),
    Column("n_records", Integer, nullable=False),
    Column("request_id", String(128), nullable=True, comment="X-Request-ID of the call"),
    Column("model_version", String(32), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Index(None, "usecase", "created_at"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", Id, primary_key=True, comment="UUIDv7, returned as prediction_id"),
    Column(
        "request_id",
        Id,
        ForeignKey("prediction_requests.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("usecase", String(63), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("features", JSON, nullable=False, comment="inputs; personal data pseudonymised"),
    Column("label", String(255), nullable=False),
    Column("probabilities", JSON, nullable=False),
    Column("score", Float, nullable=False, comment="positive-class (or top-class) probability"),
    Column("threshold", Float, nullable=True),
    Column("latency_ms", Float, nullable=False, comment="scoring time of its request"),
    Column("entity_id", String(64), nullable=True, comment="pseudonymised entity id"),
    Column(
        "shadow", Boolean, nullable=False, server_default=false(), comment="scored by a challenger"
    ),
    Column(
        "shadow_of",
        Id,
        nullable=True,
        comment="the champion prediction a shadow one shadows",
    ),
    Column(
        "explanation",
        JSON(none_as_null=True),  # an unexplained prediction holds SQL NULL, not JSON null
        nullable=True,
        comment="the explanation returned with it (Explanation.as_dict), if one was",
    ),
    Index(None, "usecase", "created_at"),
    Index(None, "usecase", "model_version", "created_at"),  # SQLite only since 0009
    Index(None, "usecase", "label"),  # SQLite only since 0009
    Index(None, "request_id"),
    # most rows have neither: their NULLs are not indexed (migration 0005)
    Index(
        None,
        "entity_id",
        postgresql_where=text("entity_id IS NOT NULL"),
        sqlite_where=text("entity_id IS NOT NULL"),
    ),
    Index(
        None,
        "shadow_of",
        postgresql_where=text("shadow_of IS NOT NULL"),
        sqlite_where=text("shadow_of IS NOT NULL"),
    ),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "prediction_id",
        Id,
        ForeignKey("predictions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("usecase", String(63), nullable=False),
    Column("actual", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("source", String(255), nullable=True),
    Index(None, "prediction_id", "created_at"),
    Index(None, "usecase", "created_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False, unique=True, comment="public part, for lookup"),
    Column("secret_sha256", String(64), nullable=False, comment="the secret is never stored"),
    Column("role", String(16), nullable=False, comment="predict or admin"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

training_jobs = Table(
    "training_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("usecase", String(63), nullable=False),
    Column(
        "active_usecase",
        String(63),
        nullable=True,
        unique=True,
        comment="the use case while queued or running, else NULL: one active job per use case",
    ),
    Column("state", String(16), nullable=False, comment="queued, running, succeeded, failed"),
    Column("stage", String(100), nullable=True),
    Column("progress", Float, nullable=False, default=0.0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("requested_by", String(255), nullable=True),
    Column("trigger", String(32), nullable=False, comment="api, cli, retrain-policy"),
    Column("params", JSON, nullable=True, comment="model family and hyperparameter override"),
    Column("force", Boolean, nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("version", String(32), nullable=True),
    Column("promoted", Boolean, nullable=True),
    Column("reason", Text, nullable=True, comment="why it was promoted or not"),
    Column("metrics", JSON, nullable=True, comment="hold-out metrics of the new version"),
    Column("champion_version", String(32), nullable=True),
    Column("champion_metrics", JSON, nullable=True),
    Column("n_rows", Integer, nullable=True),
    Column("data_sha256", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("worker_pid", Integer, nullable=True),
    Column(
        "owner",
        String(255),
        nullable=True,
        comment="host:pid of the API process that runs the job",
    ),
    Column(
        "heartbeat_at",
        DateTime(timezone=True),
        nullable=True,
        comment="renewed by the owner while the job is active",
    ),
    Index(None, "usecase", "created_at"),
    Index(None, "state"),
)

drift_runs = Table(
    "drift_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("usecase", String(63), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("window_size", Integer, nullable=False, comment="live rows asked for"),
    Column("n_live", Integer, nullable=False, comment="live rows compared"),
    Column("tier", String(32), nullable=False, comment="stable, watch, retrain, insufficient_data"),
    Column("level", Integer, nullable=False),
    Column("n_drifted", Integer, nullable=False),
    Column("report", JSON, nullable=False, comment="per-feature statistics"),
    Index(None, "usecase", "created_at"),
)
