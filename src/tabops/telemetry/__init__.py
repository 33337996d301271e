"""Telemetry: what a running tabops process tells about itself (logs, latency, metrics)."""
