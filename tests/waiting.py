"""Waiting in tests: poll a condition with a timeout instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], what: str, timeout: float = 60.0, interval: float = 0.5
) -> T:
    """Return the first truthy value of ``condition()``; fail naming ``what`` after ``timeout`` s.

    Tests wait for real servers (Prefect, S3, the worker process) whose speed depends on the
    machine's load: polling is as fast as the machine allows and only as patient as needed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
