"""Shared fixtures: an isolated data root, the real u2netp model, a real Prefect server."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Isolate every test session before Cutline or Prefect read their settings.
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="cutline-tests-"))
os.environ["CUTLINE_DATA_ROOT"] = str(_SESSION_ROOT / "data")
os.environ.setdefault("CUTLINE_MODEL_HOME", str(_SESSION_ROOT / "models"))
os.environ["PREFECT_HOME"] = str(_SESSION_ROOT / "prefect-client")
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"  # the test process outlives its server
os.environ.pop("PREFECT_API_URL", None)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


os.environ["CUTLINE_SERVER_PORT"] = str(_free_port())


@pytest.fixture(scope="session")
def settings():
    """Settings of the test session (isolated data root, free server port)."""
    from cutline.settings import reload_settings

    return reload_settings()


@pytest.fixture(scope="session")
def model_home(settings) -> Path:
    """The real u2netp weights, provisioned from the offline source and md5-verified."""
    from cutline import model_store

    model_store.fetch("u2netp", settings.resolved_model_home)
    return settings.resolved_model_home


@pytest.fixture(scope="session")
def prefect_server(settings) -> Iterator[str]:
    """A real Prefect server (the embedded stack, SQLite) for the whole session."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline import stack

    current = stack.up(settings)
    try:
        with temporary_settings(updates={PREFECT_API_URL: current.api_url}):
            yield current.api_url
    finally:
        stack.down(settings)


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests keep files worth looking at after a run (screenshots, outputs)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
