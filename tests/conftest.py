"""Shared fixtures: an isolated data root, the real u2netp model, a real Prefect server."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

# pytest-xdist's workers ignore SIGINT (Ctrl-C is the controller's), and an ignored signal
# stays ignored in every process a test starts: the tests that press Ctrl-C on a shoot would
# see it shrugged off. Take Python's own handler back, which children reset to the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


_free_port = free_port


os.environ["CUTLINE_SERVER_PORT"] = str(_free_port())

# The S3 server is started lazily (fixture `s3`), but its address and the studio's S3
# settings are fixed now, so the stack's worker inherits them too.
from tests import s3server  # noqa: E402

_S3_PORT = s3server._free_port_pair()
os.environ["CUTLINE_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{_S3_PORT}"
os.environ["CUTLINE_S3_REGION"] = "eu-central-1"
os.environ["CUTLINE_S3_ACCESS_KEY_ID"] = s3server.ACCESS_KEY
os.environ["CUTLINE_S3_SECRET_ACCESS_KEY"] = s3server.SECRET_KEY
for _aws in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_aws, None)

# The sign-off webhook's receiver is started lazily (fixture `webhook`) on a port fixed now,
# so the stack's worker, which runs sign-offs, calls it.
_WEBHOOK_PORT = _free_port()
os.environ["CUTLINE_SIGNOFF_WEBHOOK_URL"] = f"http://127.0.0.1:{_WEBHOOK_PORT}/hooks/signoff"
os.environ["CUTLINE_SIGNOFF_WEBHOOK_RETRIES"] = "1"
os.environ["CUTLINE_SHARE_PORT"] = str(_free_port())


# Servers whose clock faketime cannot move (SeaweedFS is a Go binary, PostgreSQL runs as a
# system service): with the clock moved for the tests only, S3 signatures and server-side
# scheduling would see two different times. Such tests are marked, and runs with a moved
# clock (CUTLINE_TEST_CLOCK in scripts/test.sh) leave them out.
REAL_CLOCK_FIXTURES = {"s3", "bucket", "own_s3", "pool_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need the real clock (see REAL_CLOCK_FIXTURES)."""
    for item in items:
        if REAL_CLOCK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_clock)


@pytest.fixture(scope="session")
def settings():
    """Settings of the test session (isolated data root, free server port)."""
    from cutline.base.settings import reload_settings

    return reload_settings()


@pytest.fixture(scope="session")
def model_home(settings) -> Path:
    """The real u2netp weights and every model the shipped rules name (MODNet, the fallback of
    doubtful cutouts), provisioned from their offline sources and md5-verified, as
    `scripts/setup.sh` does."""
    from cutline.imaging import model_store
    from rules.engine import load_rules

    model_store.fetch("u2netp", settings.resolved_model_home)
    for name in load_rules(settings.rules_file).models_named():
        model_store.fetch(name, settings.resolved_model_home)
    return settings.resolved_model_home


@pytest.fixture(scope="session")
def prefect_server(settings) -> Iterator[str]:
    """A real Prefect server (the embedded stack, SQLite) for the whole session."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline.ops import stack

    current = stack.up(settings)
    try:
        with temporary_settings(updates={PREFECT_API_URL: current.api_url}):
            yield current.api_url
    finally:
        stack.down(settings)


@pytest.fixture(scope="session")
def s3() -> Iterator[s3server.SeaweedS3]:
    """A real SeaweedFS S3 server on loopback for the whole session."""
    server = s3server.start(_SESSION_ROOT / "seaweedfs", s3_port=_S3_PORT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3, request) -> str:
    """A fresh bucket for one test; returns its name."""
    import s3fs

    name = (
        "t"
        + "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
        + os.urandom(3).hex()
    )
    fs = s3fs.S3FileSystem(
        key=s3server.ACCESS_KEY,
        secret=s3server.SECRET_KEY,
        client_kwargs={"endpoint_url": s3.endpoint},
    )
    fs.mkdir(name)
    return name


@pytest.fixture
def override_settings():
    """Change settings (as environment variables) for one test, then put them back."""
    from cutline.base.settings import reload_settings

    saved: dict[str, str | None] = {}

    def apply(**values: str) -> object:
        for key, value in values.items():
            env = f"CUTLINE_{key.upper()}"
            saved.setdefault(env, os.environ.get(env))
            os.environ[env] = value
        return reload_settings()

    yield apply
    for env, value in saved.items():
        if value is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = value
    reload_settings()


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests keep files worth looking at after a run (screenshots, outputs)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def webhook():
    """The studio's webhook receiver (a real HTTP server) for sign-off calls."""
    from tests.webhook_server import WebhookReceiver

    receiver = WebhookReceiver(_WEBHOOK_PORT)
    try:
        yield receiver
    finally:
        receiver.close()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page():
    """A page of Debian's headless Chromium, driven by playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed: run `bash scripts/setup.sh --test` (as root)."
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)  # CI machines are shared: be patient, never flaky
        try:
            yield page
        finally:
            browser.close()
