"""Persistence: safe files for saved models and checkpoints, and chunked h5ad writing."""
