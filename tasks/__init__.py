"""Prefect tasks of the shoot pipeline, each mapped over batches of image references."""
