"""Monitoring: drift of live inputs, scores and labels against a model's reference."""
