"""Helpers for flows that suspend: a suspended run replays from the top when resumed, so
one-time side effects are remembered as run inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from prefect.input import create_flow_run_input, read_flow_run_input


def once(key: str) -> bool:
    """True the first time ``key`` is seen in this run: suspended runs replay from the top."""
    if read_flow_run_input(key) is not None:
        return False
    create_flow_run_input(key, True)
    return True


T = TypeVar("T")


def remembered(key: str, make: Callable[[], T]) -> T:
    """``make()`` the first time ``key`` is seen in this run, its stored (JSON) value after
    that, so a replayed run sees what the first pass produced (a verdict, an issued link)."""
    stored = read_flow_run_input(key)
    if stored is not None:
        return stored
    value = make()
    create_flow_run_input(key, value)
    return value


def judged_once(key: str, judge: Callable[[], str]) -> str:
    """``judge()`` the first time ``key`` is seen in this run, its stored verdict after that,
    so a replayed run judges an answer the same way."""
    return remembered(key, judge)
