"""The embedded local stack: a Prefect server (API + UI) run in the background.

``cutline up`` starts it under the data root (SQLite by default, PostgreSQL when a URL
is set) and ``cutline down`` stops it; state lives in the data root, so it survives a
restart. When PREFECT_API_URL is already set, that server is used and nothing starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cutline.errors import CutlineError
from cutline.settings import CutlineSettings

_HEALTH_TIMEOUT = 120.0


@dataclass(frozen=True)
class StackStatus:
    """Whether the stack answers, where, and whether Cutline started it."""

    api_url: str
    healthy: bool
    managed: bool
    pid: int | None

    @property
    def ui_url(self) -> str:
        """The Prefect UI's address."""
        return self.api_url.removesuffix("/api")


def _run_dir(settings: CutlineSettings) -> Path:
    path = settings.data_root / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_file(settings: CutlineSettings, service: str) -> Path:
    return _run_dir(settings) / f"{service}.pid"


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def external_api_url() -> str | None:
    """PREFECT_API_URL from the environment, when the user points Cutline at their own server."""
    return os.environ.get("PREFECT_API_URL") or None


def api_url(settings: CutlineSettings) -> str:
    """The API every Cutline command talks to: an existing PREFECT_API_URL, else the embedded one."""
    return external_api_url() or settings.api_url


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_env(settings: CutlineSettings) -> dict[str, str]:
    """Environment of the embedded server process."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(settings.prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST=settings.server_host,
        PREFECT_SERVER_API_PORT=str(settings.server_port),
        PREFECT_UI_API_URL=settings.api_url,
        PREFECT_LOGGING_LEVEL=os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    )
    if settings.server_database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = settings.server_database_url
    return env


def client_env(settings: CutlineSettings) -> dict[str, str]:
    """Environment variables a process needs to use the stack as its Prefect API."""
    return {
        "PREFECT_API_URL": api_url(settings),
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def status(settings: CutlineSettings) -> StackStatus:
    """Current state of the stack."""
    url = api_url(settings)
    pid = None if external_api_url() else _read_pid(_pid_file(settings, "server"))
    return StackStatus(api_url=url, healthy=is_healthy(url), managed=pid is not None, pid=pid)


def up(settings: CutlineSettings, *, timeout: float = _HEALTH_TIMEOUT) -> StackStatus:
    """Start the embedded server in the background unless an API already answers."""
    current = status(settings)
    if current.healthy:
        return current
    if external_api_url():
        raise CutlineError(
            f"PREFECT_API_URL={current.api_url} does not answer.",
            hint="Start that server, or unset PREFECT_API_URL to use Cutline's embedded stack.",
        )
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    log_dir = settings.data_root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "server.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                settings.server_host,
                "--port",
                str(settings.server_port),
            ],
            env=server_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(settings, "server").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise CutlineError(
                f"The Prefect server exited during start-up (code {proc.returncode}). Log {log_path}:\n{tail}",
                hint=f"Is port {settings.server_port} taken? Set CUTLINE_SERVER_PORT to another port.",
            )
        if is_healthy(settings.api_url):
            return status(settings)
        time.sleep(0.5)
    raise CutlineError(
        f"The Prefect server did not answer within {timeout:.0f} s.", hint=f"See {log_path}."
    )


def _stop_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def down(settings: CutlineSettings, *, timeout: float = 20.0) -> list[str]:
    """Stop every background service Cutline started; return the names stopped."""
    stopped = []
    for pid_file in sorted(_run_dir(settings).glob("*.pid")):
        pid = _read_pid(pid_file)
        if pid is not None:
            _stop_pid(pid, timeout)
            stopped.append(pid_file.stem)
        pid_file.unlink(missing_ok=True)
    return stopped


@contextlib.contextmanager
def using_stack(settings: CutlineSettings) -> Iterator[StackStatus]:
    """Make the stack the Prefect API of this process for the duration of the block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    current = up(settings)
    with temporary_settings(updates={PREFECT_API_URL: current.api_url}):
        yield current
