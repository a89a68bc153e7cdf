"""Rules the test suite itself keeps, so one test cannot quietly break the others."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_imports_conftest() -> None:
    """Importing tests.conftest runs its module code a second time: new server ports in the
    environment behind the session's S3 server, webhook and stack (seen: every S3 test of a CI
    run failing to connect). Shared helpers live in their own modules (tests/ports.py)."""
    pattern = re.compile(r"^\s*(from\s+tests\.conftest\s+import|import\s+tests\.conftest)", re.M)
    offenders = [
        p.name
        for p in TESTS.glob("*.py")
        if p.name != "conftest.py" and pattern.search(p.read_text())
    ]
    assert offenders == []
