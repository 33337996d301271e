"""Persistence: the database engine, the typed training tables (and the audit store)."""
