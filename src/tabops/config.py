"""Settings, read from the environment once by an entry point and passed down.

Every field can be set as ``TABOPS_<FIELD>``; nested fields use ``__`` (``TABOPS_DB__URL``).
Relative paths are taken from the working directory (``make run`` runs from the repository).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "MIN_KEY_LENGTH",
    "PLACEHOLDER_SECRET",
    "ApiSettings",
    "AuditSettings",
    "AuthSettings",
    "LifecycleSettings",
    "LogSettings",
    "MonitorSettings",
    "MetricsSettings",
    "DatabaseSettings",
    "MlflowSettings",
    "Settings",
    "UiSettings",
]

PLACEHOLDER_SECRET = "changethis"
MIN_KEY_LENGTH = 20
"""Shortest operator-supplied API key accepted outside dev mode."""


class DatabaseSettings(BaseModel):
    """Where the training tables (and later the audit store) live."""

    url: str = ""
    """SQLAlchemy URL. Empty means a SQLite file ``tabops.db`` in ``var_dir``.
    For PostgreSQL: ``postgresql+psycopg://user:password@host:5432/tabops``."""

    echo: bool = False
    """Log every SQL statement (debugging only)."""

    connect_timeout_s: float = Field(default=3.0, gt=0)
    """Longest wait for a new PostgreSQL connection (TCP and start-up). With the statement
    timeout, it bounds how long a request waits on an unreachable or hung database before
    its record goes to the spool (see docs/reliability.md)."""

    statement_timeout_ms: int = Field(default=5000, ge=0)
    """PostgreSQL cancels a statement running longer than this (0: no limit). Each audit
    transaction, key lookup and readiness probe is bounded by it. Training-table reads of
    ``tabops train`` and monitoring queries run in their own processes or threads and may
    need more on big tables: raise it there."""

    pool_timeout_s: float = Field(default=2.0, gt=0)
    """Longest wait for a free pooled connection before a request gives up on the
    database (and spools)."""

    keepalive_idle_s: int = Field(default=10, ge=1)
    """TCP keep-alive idle time of PostgreSQL connections: a peer that vanished without a
    reset (a partition, a frozen host) is noticed in seconds, not in TCP's minutes."""


class MlflowSettings(BaseModel):
    """The MLflow tracking server and model registry."""

    tracking_uri: str = ""
    """MLflow tracking URI. Empty means a SQLite store ``mlflow.db`` in ``var_dir``."""

    registry_uri: str = ""
    """MLflow registry URI. Empty means the same as the tracking URI."""

    artifact_root: str = ""
    """Where new experiments store artifacts. Empty means ``var_dir/mlartifacts`` for the
    embedded store, and the server's default for a tracking server."""

    experiment: str = "tabops"
    """Prefix of experiment names: runs of use case ``credit`` go to ``tabops/credit``."""


class ApiSettings(BaseModel):
    """The HTTP service."""

    host: str = "127.0.0.1"
    """Address ``tabops serve`` binds to."""

    port: int = 8000
    """Port ``tabops serve`` listens on."""

    workers: int = 1
    """Worker processes for ``tabops serve``."""

    keep_alive_s: float = Field(default=75.0, gt=0)
    """Idle keep-alive connections are closed after this long. Keep it above a load
    balancer's idle timeout (60 s on most), or it may reuse a connection being closed."""

    access_log: bool = False
    """Log one line per HTTP request. Off by default: every prediction is in the audit
    store and every request is counted in the Prometheus metrics, and a log line per
    request costs about 3% of a worker's time."""

    opentelemetry: bool = False
    """FastAPI's native OpenTelemetry instrumentation (spans, metrics and logs sent to the
    SDK providers the process configures). Off by default: tabops reports through its
    Prometheus metrics and JSON logs, and the check alone cost about 4% of a worker's time
    per request."""

    compiled: bool = True
    """Serve through the compiled fast path of a model that passes its parity check at load.
    False serves every model through its scikit-learn pipeline."""

    coalesce_us: int = Field(default=0, ge=0, le=100_000)
    """Score concurrent single-record requests together: the first waits this many
    microseconds for others. 0 (the default) is off: with the compiled scorer it did not
    pay on 2 cores; with the pipeline it does (see docs/performance.md)."""

    max_batch: int = Field(default=1000, ge=1)
    """Largest number of records accepted in one ``{"records": [...]}`` request."""

    max_body_bytes: int = Field(default=4 << 20, ge=1024)
    """Largest request body (4 MiB; a 1,000-record batch is about 0.2-0.5 MB): larger
    ones get 413 before they are read."""

    rate_limit: str = "1000/second"
    """Requests allowed per API key (or per client address without a key), in the
    ``limits`` notation (``"100/second;5000/minute"``); past it, 429 with ``Retry-After``.
    Shared by every replica through Redis when ``redis_url`` is set. Empty: no limit."""

    max_in_flight: int = Field(default=256, ge=1)
    """Requests served at once by one worker process; past it, 503 with ``Retry-After``
    (load shedding: a short refusal rather than seconds of queueing for everyone)."""

    request_timeout_s: float = Field(default=30.0, gt=0)
    """A request unanswered after this long gets 504."""

    drain_s: float = Field(default=5.0, ge=0)
    """On SIGTERM, ``/ready`` answers 503 at once and requests are still served for this
    long (so load balancers stop routing here), then the server stops gracefully."""

    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    """After the drain, requests in flight get this long to finish before the workers
    are stopped. Keep ``drain_s + shutdown_timeout_s`` under the orchestrator's grace
    period (Kubernetes: ``terminationGracePeriodSeconds``, 30 s)."""

    max_drift_window: int = Field(default=10_000, ge=10)
    """Largest drift window (live rows) a predict key may ask for; larger windows (up to
    100,000) need an admin key. A drift run costs seconds of CPU and stores a history row."""

    default_usecase: str = ""
    """Use case answered by ``POST /predict``; empty means the first one in name order."""

    usecases: list[str] = []
    """Use cases to serve; empty means every use case in ``usecases_dir``."""


class AuditSettings(BaseModel):
    """The audit trail: every served prediction recorded before its response leaves."""

    enabled: bool = True
    """Record predictions. Off only for benchmarks comparing against an unaudited server."""

    migrate_on_start: bool = True
    """Apply the audit store's migrations when the server starts."""

    batch_size: int = Field(default=512, ge=1)
    """Most predictions written in one transaction (group commit)."""

    flush_interval_ms: float = Field(default=0.0, ge=0)
    """How long the writer lingers to gather more records into one transaction, while its
    last transaction held more than one request (a lone client never waits for others).
    0 by default: records queued while a transaction runs already share the next one, and
    on PostgreSQL a small batch is one round trip. See docs/audit.md for measurements."""

    queue_size: int = Field(default=10_000, ge=1)
    """Requests waiting to be written; when full, new requests wait (backpressure)."""

    spool_dir: Path | None = None
    """Where records go while the database is unreachable; default ``var_dir/spool``."""

    spool_max_bytes: int = Field(default=1 << 30, ge=1024)
    """Largest total spool size; past it, predictions fail with 503 rather than go unrecorded."""

    replay_interval_s: float = Field(default=5.0, gt=0)
    """How often spooled records are replayed into the database."""

    jsonl_path: Path | None = None
    """Optional inference log: one JSON line per prediction (off when empty)."""

    pseudonym_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    """Key of the keyed hash (HMAC-SHA256) that pseudonymises personal data and entity ids.
    Required in production; keep it stable, or old and new audit rows cannot be joined."""


class AuthSettings(BaseModel):
    """API keys and roles. ``predict`` keys may score and send feedback; ``admin`` keys may
    also train, promote and read the audit trail."""

    anonymous_predict: bool = False
    """Let callers without a key score and send feedback (local demos; ``make run`` sets it).
    Training, promotion and the audit trail always need an admin key."""

    admin_key: SecretStr | None = None
    """An admin key given by the operator (e.g. from a secret store), besides the key table."""

    predict_key: SecretStr | None = None
    """A predict key given by the operator, besides the key table."""

    cache_s: float = Field(default=30.0, gt=0)
    """How long a key found in the key table is trusted without asking it again: a
    revoked key stops working within this. While the key table is unreachable, a key
    valid when last checked keeps working (see docs/reliability.md)."""


class MonitorSettings(BaseModel):
    """The server's periodic monitoring pass."""

    interval_s: float = Field(default=300.0, gt=0)
    """How often drift and live quality are refreshed (gauges, drift history) and the
    specs' retrain policies are applied."""

    enabled: bool = True
    """Run the periodic pass (the drift endpoints work either way)."""


class LifecycleSettings(BaseModel):
    """Training jobs and model swaps."""

    poll_interval_s: float = Field(default=10.0, gt=0)
    """How often each server checks the registry for a moved ``champion`` alias."""

    job_workers: int = Field(default=1, ge=1)
    """Training jobs run at once (each in its own process), across use cases."""

    job_lease_s: float = Field(default=60.0, ge=5)
    """A server renews the jobs it holds every third of this; a queued or running job
    whose lease is older was held by a server that died, and is marked failed."""


class MetricsSettings(BaseModel):
    """Prometheus metrics at ``GET /metrics``."""

    multiproc_dir: Path | None = None
    """Where the worker processes of ``tabops serve --workers N`` share their metric files;
    default ``var_dir/metrics``. Each server uses its own sub-folder, emptied at start."""

    refresh_interval_s: float = Field(default=5.0, gt=0)
    """How often each process samples the gauges it does not update as it goes (audit
    queue and spool, loaded models)."""


class UiSettings(BaseModel):
    """The web UI (``tabops ui``): a Streamlit app that talks to the API over HTTP only."""

    api_url: str = "http://127.0.0.1:8000"
    """Base URL of the API the UI calls (a replica, or the load balancer in front of them)."""

    api_key: SecretStr | None = None
    """API key the UI sends; empty means none (anonymous prediction, where the API allows
    it). Users can enter another key in the sidebar, e.g. an admin key for the Models page."""

    host: str = "127.0.0.1"
    """Address ``tabops ui`` binds to."""

    port: int = 8501
    """Port ``tabops ui`` listens on."""

    mlflow_port: int = 5000
    """Port of the MLflow UI that ``tabops up`` starts beside the API and the web UI."""

    mlflow_url: str = ""
    """Link to the MLflow UI shown on the Models page; empty hides it (``tabops up`` sets it)."""

    timeout_s: float = Field(default=30.0, gt=0)
    """Timeout of each API call made by the UI."""


class LogSettings(BaseModel):
    """Application logs (standard error). Secrets are masked in every line."""

    format: Literal["auto", "json", "text"] = "auto"
    """``json``: one JSON object per line (timestamp, level, logger, message, and request id,
    use case and model version on request-scoped lines); ``text``: the same on one readable
    line; ``auto``: text when standard error is a terminal, JSON otherwise."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level of tabops's own loggers in ``tabops serve`` (other commands show warnings only)."""


class Settings(BaseSettings):
    """All tabops settings."""

    model_config = SettingsConfigDict(
        env_prefix="TABOPS_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    env: Literal["dev", "prod"] = "dev"
    """``dev`` allows placeholder secrets, anonymous prediction and short operator keys;
    ``prod`` refuses to start with any of them."""

    var_dir: Path = Path("var")
    """Where the embedded SQLite database, MLflow store and spool files live."""

    usecases_dir: Path = Path("usecases")
    """Folder holding one sub-folder per use case, each with a ``usecase.yaml``."""

    data_dirs: dict[str, Path] = {}
    """Per use case, the folder its data files are read from, overriding the spec
    (``TABOPS_DATA_DIRS__SCHOOL=/data/student-performance``)."""

    database_url: str = ""
    """Shorthand for ``db.url`` (``TABOPS_DATABASE_URL``); wins when both are set."""

    redis_url: str = ""
    """Redis for state shared by replicas (``redis://host:6379/0``): the per-key rate
    limit windows. Empty: each process keeps its own."""

    redis_prefix: str = "tabops"
    """Prefix of every key tabops writes in Redis."""

    db: DatabaseSettings = DatabaseSettings()
    mlflow: MlflowSettings = MlflowSettings()
    api: ApiSettings = ApiSettings()
    audit: AuditSettings = AuditSettings()
    auth: AuthSettings = AuthSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    monitor: MonitorSettings = MonitorSettings()
    metrics: MetricsSettings = MetricsSettings()
    ui: UiSettings = UiSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _apply_defaults(self) -> Settings:
        if self.database_url:
            self.db.url = self.database_url
        return self

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Settings:
        key = self.audit.pseudonym_key.get_secret_value()
        if self.env != "dev" and (key == PLACEHOLDER_SECRET or len(key) < 16):
            raise ValueError(
                "TABOPS_AUDIT__PSEUDONYM_KEY must be set to a secret of at least 16 characters "
                "outside dev mode (it pseudonymises personal data in the audit log)"
            )
        return self

    @model_validator(mode="after")
    def _enforce_prod_auth(self) -> Settings:
        # what the ``env`` docstring promises: prod has no anonymous caller and no weak key
        if self.env == "dev":
            return self
        if self.auth.anonymous_predict:
            raise ValueError(
                "TABOPS_AUTH__ANONYMOUS_PREDICT is not allowed outside dev mode: every "
                "prediction must be made with an API key"
            )
        for name, secret in (
            ("ADMIN_KEY", self.auth.admin_key),
            ("PREDICT_KEY", self.auth.predict_key),
        ):
            value = secret.get_secret_value() if secret is not None else ""
            if value and (  # empty: not set
                len(value) < MIN_KEY_LENGTH or value == PLACEHOLDER_SECRET or len(set(value)) < 8
            ):
                raise ValueError(
                    f"TABOPS_AUTH__{name} must be a random secret of at least {MIN_KEY_LENGTH} "
                    "characters outside dev mode (`tabops keys create` makes strong keys)"
                )
        return self

    @property
    def metrics_dir(self) -> Path:
        """Folder of the per-server metric folders of multi-worker servers."""
        return self.metrics.multiproc_dir or self.var_dir / "metrics"

    @property
    def spool_dir(self) -> Path:
        """Folder of the audit spool files."""
        return self.audit.spool_dir or self.var_dir / "spool"

    @property
    def database_url_resolved(self) -> str:
        """The database URL, with the embedded SQLite default filled in."""
        return self.db.url or f"sqlite:///{(self.var_dir / 'tabops.db').as_posix()}"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI, with the embedded SQLite default filled in."""
        return self.mlflow.tracking_uri or f"sqlite:///{(self.var_dir / 'mlflow.db').as_posix()}"

    @property
    def registry_uri(self) -> str:
        """The MLflow registry URI (the tracking URI unless set)."""
        return self.mlflow.registry_uri or self.tracking_uri

    @property
    def artifact_root(self) -> str | None:
        """Artifact location for new experiments, or None for the server's default."""
        if self.mlflow.artifact_root:
            return self.mlflow.artifact_root
        if self.mlflow.tracking_uri:
            return None
        return (self.var_dir / "mlartifacts").resolve().as_uri()
