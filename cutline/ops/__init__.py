"""The doors and the machinery around them: the CLI, the local stack and its worker, shoot status."""
