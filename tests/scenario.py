"""Scenario tests: steps that build on each other run in order, and a failure names its step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def run_steps(steps: Sequence[Callable[..., None]], *args: Any) -> None:
    """Run each ``_step_...`` function with ``args`` in order; say which step failed.

    Used where a story (decide, rerun, restart) only makes sense in sequence: the steps stay
    readable one by one, yet no test depends on another test having run before it.
    """
    for step in steps:
        try:
            step(*args)
        except AssertionError as error:
            name = step.__name__.removeprefix("_step_").replace("_", " ")
            raise AssertionError(f"step '{name}': {error}") from error
