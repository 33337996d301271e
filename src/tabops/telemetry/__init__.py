"""Telemetry: the process's Prometheus metrics and their multiprocess folders."""
