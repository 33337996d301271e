"""The HTTP API: transport only; the work is done by serving, scoring and the registry."""

from tabops.api.app import create_app

__all__ = ["create_app"]
