"""The local stack: Prefect's production topology on one machine, run in the background.

``cutline up`` starts a Prefect server (API + UI; SQLite under the data root by default,
PostgreSQL when a URL is set) and a worker (cutline/ops/pool_worker.py) that registers the
deployments of prefect.yaml on a process work pool and runs their flow runs; ``cutline down``
stops both. State lives in the data root, so it survives a restart. When PREFECT_API_URL is
already set, that server is used and only the worker starts (unless the deployments are
already on a pool there: then other hosts' workers run them and a desk starts nothing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cutline.base.errors import CutlineError
from cutline.base.prefect_internals import FILESYSTEM_LEASE_STORAGE
from cutline.base.settings import PROJECT_ROOT, CutlineSettings

_HEALTH_TIMEOUT = 120.0
HEARTBEAT_SECONDS = (
    30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the runs the stack's worker starts (Prefect minimum)
)
# Prefect's lease storage on disk, under PREFECT_HOME (a module name of its internals).
PERSISTENT_LEASE_STORAGE = FILESYSTEM_LEASE_STORAGE
# Longer than the runner's 30 s grace for a cancelled run's process to stop.
CANCELLING_TIMEOUT_SECONDS = 90


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


_SERVICE_MARKERS = {
    "server": b"prefect",
    "worker": b"cutline.ops.pool_worker",
    "serve": b"cutline.ops.serve",  # the serve process of a stack started before the worker
}


def _read_pid(path: Path) -> int | None:
    """The pid in a pid file if that process is alive and is still our service (a pid
    reused after a reboot by an unrelated process does not count)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    marker = _SERVICE_MARKERS.get(path.stem, b"")
    return pid if marker in cmdline else None


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
        PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS=str(
            settings.server_pause_expiry_check_seconds
        ),
    )
    # Concurrency-slot leases on disk (under PREFECT_HOME), not in the server's memory: after
    # a server crash the slots of live holders stay theirs and those of dead ones lapse when
    # their lease does. In memory, every held slot (the model's, a job's) stayed taken for
    # ever. A lease storage of the user's own (prefect-redis) is kept.
    env.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", PERSISTENT_LEASE_STORAGE)
    # A run cancelled while its process was starting can be left Cancelling by Prefect's
    # runner; the server then marks it Cancelled after this long (Prefect's default: 300 s).
    env.setdefault(
        "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_CANCELLING_TIMEOUT_SECONDS",
        str(CANCELLING_TIMEOUT_SECONDS),
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


def worker_pid(settings: CutlineSettings) -> int | None:
    """The pid of this stack's worker process, when it runs."""
    return _read_pid(_pid_file(settings, "worker"))


def status(settings: CutlineSettings) -> StackStatus:
    """Current state of the stack."""
    url = api_url(settings)
    pid = None if external_api_url() else _read_pid(_pid_file(settings, "server"))
    return StackStatus(api_url=url, healthy=is_healthy(url), managed=pid is not None, pid=pid)


def _wait_healthy(
    proc: subprocess.Popen[bytes], log_path: Path, ready, what: str, timeout: float, hint: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise CutlineError(
                f"{what} exited during start-up (code {proc.returncode}). Log {log_path}:\n{tail}",
                hint=hint,
            )
        if ready():
            return
        time.sleep(0.5)
    raise CutlineError(
        f"{what} did not become ready within {timeout:.0f} s.", hint=f"See {log_path}."
    )


def _spawn(
    settings: CutlineSettings, service: str, args: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    log_dir = settings.data_root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{service}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=PROJECT_ROOT,
        )
    _pid_file(settings, service).write_text(str(proc.pid))
    return proc, log_path


def _deployment(url: str, name: str) -> dict:
    """The API's record of deployment ``name`` ('flow/deployment'); {} for one the API does
    not have, or when it does not answer."""
    import json

    try:
        with urllib.request.urlopen(
            f"{url.rstrip('/')}/deployments/name/{name}", timeout=2
        ) as resp:
            return json.loads(resp.read()) if resp.status == 200 else {}
    except (urllib.error.URLError, OSError, ValueError):
        return {}


def pool_worker_name(pid: int) -> str:
    """The name the stack's worker process ``pid`` polls its work pool under (as the UI's
    Work Pools page lists it)."""
    return f"cutline-{socket.gethostname()}-{pid}"


def worker_polling(url: str, pool: str, worker: str, names: list[str]) -> bool:
    """Whether the worker named ``worker`` is polling work pool ``pool`` (the server lists
    it among the pool's workers once it has asked for runs) and every named deployment
    ('flow/deployment') is on that pool: the worker registers those that are not (or differ
    from prefect.yaml) before it polls, and leaves those already registered as they are."""
    import json

    request = urllib.request.Request(
        f"{url.rstrip('/')}/work_pools/{pool}/workers/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            listed = {w.get("name") for w in json.loads(resp.read())}
    except (urllib.error.URLError, OSError, ValueError):
        return False
    if worker not in listed:
        return False
    return all(_deployment(url, name).get("work_pool_name") == pool for name in names)


def work_pool_of(url: str, name: str) -> str | None:
    """The work pool whose workers run deployment ``name`` ('flow/deployment'), when it was
    registered on a pool; None for one the API does not have (or served by an older
    Cutline), or an API that does not answer.

    On a shared server whose deployments other hosts' workers run, a Cutline command on a
    desk must not start a worker: every run would then also go to whichever desk ran
    `cutline review list`. Worker hosts start theirs with `cutline up` or `prefect worker
    start`.
    """
    return _deployment(url, name).get("work_pool_name")


def worker_env(settings: CutlineSettings, url: str) -> dict[str, str]:
    """Environment of the worker process (and so of every flow run it starts)."""
    env = dict(os.environ)
    env.update(client_env(settings))
    env["PREFECT_API_URL"] = url
    env["PREFECT_WORKER_QUERY_SECONDS"] = str(settings.runner_poll_seconds)
    env["PREFECT_LOGGING_TO_API_ENABLED"] = "true"  # flow-run logs belong in the UI
    # Every flow-run process says it is alive this often; a run silent for
    # CUTLINE_STRANDED_AFTER_SECONDS lost its process and is recovered (see stranded_runs).
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    env["CUTLINE_DATA_ROOT"] = str(settings.data_root)
    return env


def _ensure_limits_on(settings: CutlineSettings, url: str) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline.services.limits import ensure_limits

    with temporary_settings(updates={PREFECT_API_URL: url}):
        ensure_limits(settings)


OWNER_VARIABLE = "cutline_stack_data_root"


def _claim_server(settings: CutlineSettings, url: str, *, found_running: bool) -> None:
    """Make sure the embedded server on our port is this stack's: a server another stack (or
    someone else) started there would run our reviews into its own catalog. A server this
    stack started is marked with its data root (a Prefect variable)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.variables import Variable

    ours = str(settings.data_root)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        owner = Variable.get(OWNER_VARIABLE, default=None)
        if found_running and owner != ours:
            whose = (
                f"the Cutline stack with data root {owner}"
                if owner
                else "a Prefect server this stack did not start"
            )
            raise CutlineError(
                f"Port {settings.server_port} is taken by {whose}; this stack's data root is "
                f"{ours}. Attaching would run this stack's reviews in the other one's catalog.",
                hint=f"Give this stack free ports (e.g. CUTLINE_SERVER_PORT="
                f"{settings.server_port + 1} and another CUTLINE_SHARE_PORT), or use that stack's "
                "CUTLINE_DATA_ROOT.",
            )
        if owner != ours:
            Variable.set(OWNER_VARIABLE, ours, overwrite=True)


def up(
    settings: CutlineSettings, *, timeout: float = _HEALTH_TIMEOUT, worker: bool | None = None
) -> StackStatus:
    """Start what is not running: the Prefect server (unless PREFECT_API_URL points at one)
    and the worker that registers the deployments of prefect.yaml on the stack's work pool
    and runs their flow runs.

    ``worker``: True starts it (`cutline up`: this machine is a worker host), False never;
    None (any other command) starts it unless the deployments are already on a pool of a
    server of the user's own, whose workers run them (see ``work_pool_of``).
    """
    from cutline.ops.deployments import deployment_names

    current = status(settings)
    if not current.healthy:
        if external_api_url():
            raise CutlineError(
                f"PREFECT_API_URL={current.api_url} does not answer.",
                hint="Start that server, or unset PREFECT_API_URL to use Cutline's embedded stack.",
            )
        settings.prefect_home.mkdir(parents=True, exist_ok=True)
        proc, log_path = _spawn(
            settings,
            "server",
            [
                "-m",
                "cutline.ops.prefect_server",
                "--host",
                settings.server_host,
                "--port",
                str(settings.server_port),
            ],
            server_env(settings),
        )
        _wait_healthy(
            proc,
            log_path,
            lambda: is_healthy(settings.api_url),
            "The Prefect server",
            timeout,
            f"Is port {settings.server_port} taken? Set CUTLINE_SERVER_PORT to another port.",
        )
    url = api_url(settings)
    if not external_api_url():
        _claim_server(settings, url, found_running=current.healthy and not current.managed)
    _ensure_limits_on(settings, url)
    if worker is None:
        worker = not (external_api_url() and work_pool_of(url, settings.shoot_deployment))
    if worker and worker_pid(settings) is None:
        names = deployment_names()
        proc, log_path = _spawn(
            settings, "worker", ["-m", "cutline.ops.pool_worker"], worker_env(settings, url)
        )
        _wait_healthy(
            proc,
            log_path,
            lambda: worker_polling(url, settings.work_pool, pool_worker_name(proc.pid), names),
            f"The worker of work pool {settings.work_pool!r} (cutline.ops.pool_worker)",
            timeout,
            "Check prefect.yaml and the flows it names.",
        )
    return status(settings)


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
