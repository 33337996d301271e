"""The use-case spec: the one source of truth for fields, types, bounds and policies,
and the request and response models derived from it."""
