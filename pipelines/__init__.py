"""Pipelines: one module per pipeline; each registers itself."""
