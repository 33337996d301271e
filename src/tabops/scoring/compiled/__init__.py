"""The compiled fast path: a fitted pipeline's preprocessing and estimator as numpy math."""
