"""Helpers for flows that suspend: a suspended run replays from the top when resumed, so
one-time side effects are remembered as run inputs."""

from __future__ import annotations

from collections.abc import Callable

from prefect.input import create_flow_run_input, read_flow_run_input


def once(key: str) -> bool:
    """True the first time ``key`` is seen in this run: suspended runs replay from the top."""
    if read_flow_run_input(key) is not None:
        return False
    create_flow_run_input(key, True)
    return True


def judged_once(key: str, judge: Callable[[], str]) -> str:
    """``judge()`` the first time ``key`` is seen in this run, its stored verdict after that,
    so a replayed run judges an answer the same way."""
    stored = read_flow_run_input(key)
    if stored is not None:
        return stored
    verdict = judge()
    create_flow_run_input(key, verdict)
    return verdict
