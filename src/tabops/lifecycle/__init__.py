"""The model lifecycle: the MLflow registry adapter, the promotion gate and sanity
checks, a training run end to end, and training jobs in worker processes."""
