"""The doors and the machinery around them: the CLI, the local stack, the serve process, shoot status."""
