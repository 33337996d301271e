"""Training, pure: the pipeline a spec describes, its model family, cross-validation,
threshold and hold-out metrics. No database, no MLflow."""
