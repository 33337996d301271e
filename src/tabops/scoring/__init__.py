"""Scoring: from validated records to labels and probabilities, through the fitted
pipeline or a compiled fast path that must match it (parity)."""
