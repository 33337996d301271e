"""Persistence: the database engine, the typed training tables (and the audit store)."""

from tabops.store.db import create_db_engine, ping
from tabops.store.tables import (
    count_rows,
    fetch_entity,
    ingest_rows,
    insert_rows,
    read_training_frame,
    seed_table,
    training_table,
)

__all__ = [
    "count_rows",
    "create_db_engine",
    "fetch_entity",
    "ingest_rows",
    "insert_rows",
    "ping",
    "read_training_frame",
    "seed_table",
    "training_table",
]
