"""Errors that carry what went wrong, for which input, and what to do next."""

from __future__ import annotations


class CutlineError(Exception):
    """Base class: a message a producer can act on, plus the next step."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}".strip())


class ImageInputError(CutlineError):
    """One input image cannot be used; the rest of the shoot goes on."""

    def __init__(self, source: str, problem: str, *, hint: str = "") -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}", hint=hint)


class ConfigError(CutlineError):
    """A settings, rules, presets or manifest file is wrong; the run cannot start."""


class ModelError(CutlineError):
    """The background-removal model cannot be provisioned or loaded."""


class OutputStorageError(CutlineError):
    """The output storage takes no more writes; every later write would fail too, so the
    batch stops (and is retried) instead of failing its images one by one."""


class StorageFullError(OutputStorageError):
    """The output storage has no space left."""


class StorageUnwritableError(OutputStorageError):
    """The output storage refuses writes (read-only, or no permission)."""
