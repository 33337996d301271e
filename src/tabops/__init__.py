"""tabops: from a CSV file and a YAML spec to a trained, audited, monitored prediction service."""

__version__ = "0.1.0"
__all__ = ["__version__"]
