"""The HTTP API: transport only; the work is done by serving, scoring and the registry."""
