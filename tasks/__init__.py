"""The shoot pipeline's stages (listed once in `tasks.stages`), each a Prefect task per batch of image references."""
