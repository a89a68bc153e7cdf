"""Cutline as Prefect documents it across machines: Prefect's own `prefect server start` on
PostgreSQL, a process work pool, deployments from prefect.yaml (`prefect deploy --all`), and
two worker "hosts" that share nothing but the API URL and the object storage.

Each host is `prefect worker start --pool cutline` in a mount and UTS namespace of its own
(`unshare`): its own hostname, HOME, PREFECT_HOME, CUTLINE_DATA_ROOT, working folder, its own
copy of the project installed in its own virtualenv (the third-party packages are bound in
read-only), all mounted at the same path on every host, as one install layout deployed to
several machines would be. The other hosts' folders, the desk's, the server's and the project
checkout itself are hidden behind empty read-only mounts, so a host that read or wrote
anywhere but its own folder, the API and S3 would fail.

Each host also runs `cutline task-worker` (CUTLINE_BATCH_RUNNER=task-workers): one process
that imports Prefect and loads the model once, then runs the shoots' batches it is handed,
batch after batch. A desk with only PREFECT_API_URL and the S3 settings submits a 14-image
shoot on S3 (`cutline run --detach`). When the host not running the shoot itself has finished
a batch and just begun another, it dies (every process in its namespaces SIGKILLed); the
shoot, on the other host, marks the lost batch's task run Crashed and sends it to the
surviving host's task worker. Then every input is in the ledger and once in the DAM, and the reviews
and the sign-off, decided from a desk with only the API URL, land in the ledger and the DAM.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
import venv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from benchmarks.postgres import fresh_database_url
from cutline.base import storage
from cutline.base.settings import PROJECT_ROOT
from cutline.imaging.samples import DEFAULT_SAMPLES, Sample, write_sample_shoot
from cutline.ops.deployments import deployment_names
from cutline.records.ledger import read_ledger
from tests import s3server
from tests.ports import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

JOB = "HOSTS-1"
HEARTBEAT_SECONDS = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY on the hosts (Prefect's minimum)
STRANDED_AFTER_SECONDS = 50  # CUTLINE_STRANDED_AFTER_SECONDS: a dead host's runs fall silent
# The third-party packages (Prefect, onnxruntime, ...) every host binds in read-only: installing
# them per host would download them; the project itself is each host's own copy.
SHARED_PACKAGES = sysconfig.get_paths()["purelib"]
NOT_COPIED = (".venv", ".venv-*", ".git", "__pycache__", ".*_cache", "test-artifacts")

# Run inside `unshare --mount --uts`: name the host, mount its folder at the path every host
# uses, bind the shared third-party packages read-only, hide everything else of this machine
# that a host must not see, then become the command.
_ISOLATE = r"""
set -e
name=$1 folder=$2 path=$3 deps=$4 hidden=$5
shift 5
hostname "$name"
mount --bind "$folder" "$path"
mount --bind "$deps" "$path/deps"
mount -o remount,bind,ro "$path/deps"
IFS=:
for h in $hidden; do mount -t tmpfs -o ro tmpfs "$h"; done
unset IFS
cd "$path/work"
exec "$@"
"""


def _unshare() -> list[str]:
    """The `unshare` command giving a process its own mounts and hostname."""
    command = ["unshare", "--mount", "--uts", "--propagation", "private"]
    if os.geteuid() != 0:
        command.insert(1, "--map-root-user")  # unprivileged user namespaces
    probe = subprocess.run([*command, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail(
            "This test isolates each worker host with `unshare --mount --uts` (util-linux): run "
            f"it as root or with unprivileged user namespaces enabled ({probe.stderr.strip()})."
        )
    return command


@dataclass
class Host:
    """One worker machine: a folder of its own, seen by its processes at ``path``."""

    name: str
    folder: Path  # its disk, as this test sees it
    path: Path  # where its processes see it (the same on every host)
    env: dict[str, str]
    hidden: list[Path]
    unshare: list[str]
    worker: subprocess.Popen | None = None  # `prefect worker start`: shoots, reviews, sign-offs
    task_worker: subprocess.Popen | None = None  # `cutline task-worker`: the shoots' batches
    started: list[subprocess.Popen] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)
    runs: dict[str, str] = field(default_factory=dict)  # flow-run id -> pid seen running it

    @property
    def python(self) -> str:
        return str(self.path / "venv" / "bin" / "python")

    @property
    def task_worker_id(self) -> str:
        """Its task worker's id among the Prefect server's (host name and process id: no
        PID namespace, so the pid this test sees)."""
        assert self.task_worker is not None
        return f"{self.name}-{self.task_worker.pid}"

    def command(self, *args: str) -> list[str]:
        """``args`` run on this host (in its namespaces)."""
        hidden = ":".join(str(p) for p in self.hidden)
        return [
            *self.unshare,
            "sh",
            "-c",
            _ISOLATE,
            "isolate",
            self.name,
            str(self.folder),
            str(self.path),
            SHARED_PACKAGES,
            hidden,
            *args,
        ]

    def run(self, *args: str, cwd: str = "work") -> subprocess.CompletedProcess:
        """Run a command on this host to its end (from ``cwd`` inside its folder)."""
        result = subprocess.run(
            self.command("sh", "-c", 'cd "$0" && exec "$@"', str(self.path / cwd), *args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{self.name}: {args}\n{result.stdout}\n{result.stderr}"
        return result

    def start(self, log_name: str, *args: str) -> subprocess.Popen:
        """A long-lived process of this host, logging into ``<log_name>.log`` in its folder."""
        log = (self.folder / f"{log_name}.log").open("ab")
        process = subprocess.Popen(
            self.command(*args),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started.append(process)
        self.namespaces.add(
            wait_until(
                lambda: _isolated_namespace(self, process), f"{self.name}'s {log_name}", 60, 0.2
            )
        )
        return process

    def start_worker(self) -> None:
        """`prefect worker start --pool cutline`: the flow runs (shoots, reviews, sign-offs)."""
        self.worker = self.start(
            "worker",
            *(self.python, "-m", "prefect", "worker", "start", "--pool", "cutline"),
            *("--name", self.name, "--limit", "2"),
        )

    def start_task_worker(self, storage_uri: str) -> None:
        """`cutline task-worker`: one process that runs shoots' batches one at a time."""
        self.task_worker = self.start(
            "task-worker",
            *(self.python, "-m", "cutline", "task-worker", "--limit", "1"),
            *("--storage", storage_uri),
        )

    def processes(self) -> list[int]:
        """Every live process of this host: everything in its mount and UTS namespaces,
        which are never this test's own (those hold every other process of the machine)."""
        mine = _namespace_of(os.getpid())
        assert self.namespaces and mine not in self.namespaces, self.name
        return [pid for pid in _pids() if _namespace_of(pid) in self.namespaces]

    def look(self) -> None:
        """Note which flow runs this host's processes are running now."""
        for pid in self.processes():
            run_id = _environ(pid).get("PREFECT__FLOW_RUN_ID")
            if run_id:
                self.runs.setdefault(run_id, str(pid))

    def die(self) -> None:
        """The machine dies: SIGKILL every process it has, its workers and their flow runs
        alike (Prefect starts each flow run in a process group of its own)."""
        while pids := self.processes():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        for process in self.started:
            process.wait(timeout=30)

    def stop(self) -> None:
        """At the end of the test: the workers by SIGTERM, then whatever the host still runs
        (flow runs live in process groups of their own)."""
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        if self.namespaces:
            self.die()
        for process in self.started:  # any that never got as far as its namespaces
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _namespace_of(pid: int) -> str:
    """The mount and UTS namespaces of a process ('' when it is gone)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") + os.readlink(f"/proc/{pid}/ns/uts")
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def _isolated_namespace(host: Host, process: subprocess.Popen) -> str | None:
    """The namespaces of a process of the host once it runs in them: it has become the
    host's Python (after `unshare` and the mounts) and is in namespaces other than ours."""
    assert process.poll() is None, f"{host.name}: {process.args[-8:]} ended at once"
    try:
        program = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return None
    namespace = _namespace_of(process.pid)
    if program.decode() != host.python or namespace in ("", _namespace_of(os.getpid())):
        return None
    return namespace


def _install(folder: Path, path: Path) -> None:
    """Lay out one host: a copy of the project (no virtualenv, no git), a virtualenv of its own
    whose only project code is that copy, the shared third-party packages (bound in read-only
    at ``deps``), its own data root with the model, home, Prefect home, temp and work folder."""
    shutil.copytree(PROJECT_ROOT, folder / "code", ignore=shutil.ignore_patterns(*NOT_COPIED))
    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder / "venv")
    site = folder / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (site / "site-packages" / "cutline-host.pth").write_text(f"{path / 'code'}\n{path / 'deps'}\n")
    for name in ("deps", "home", "prefect", "tmp", "work", "data/models"):
        (folder / name).mkdir(parents=True, exist_ok=True)


def _copy_model(model_home: Path, folder: Path) -> None:
    """The model installed on the host (`cutline models fetch`), in its own data root."""
    shutil.copytree(model_home, folder / "data" / "models", dirs_exist_ok=True)


@pytest.fixture
def prefect_api(tmp_path) -> Iterator[str]:
    """Prefect's own server (`prefect server start`) on a fresh PostgreSQL database."""
    home = tmp_path / "server"
    home.mkdir()
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": fresh_database_url("cutline_test_two_hosts"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log = (home / "server.log").open("ab")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        assert server.poll() is None, (home / "server.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_until(healthy, "prefect server start to answer", 120, 0.5)
    try:
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def _s3_env(s3: s3server.SeaweedS3) -> dict[str, str]:
    return {
        "CUTLINE_S3_ENDPOINT_URL": s3.endpoint,
        "CUTLINE_S3_REGION": "eu-central-1",
        "CUTLINE_S3_ACCESS_KEY_ID": s3server.ACCESS_KEY,
        "CUTLINE_S3_SECRET_ACCESS_KEY": s3server.SECRET_KEY,
    }


@pytest.fixture
def hosts(tmp_path, prefect_api, s3, model_home) -> Iterator[tuple[Host, Host]]:
    """Two worker hosts laid out and installed, not yet started."""
    same_path = Path(tempfile.mkdtemp(prefix="cutline-host-"))  # a mount point on every host
    unshare = _unshare()
    made = []
    for name in ("host-a", "host-b"):
        folder = tmp_path / name
        _install(folder, same_path)
        _copy_model(model_home, folder)
        env = {
            "PATH": f"{same_path / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(same_path / "home"),
            "TMPDIR": str(same_path / "tmp"),
            "PREFECT_HOME": str(same_path / "prefect"),
            "PREFECT_API_URL": prefect_api,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
            "CUTLINE_DATA_ROOT": str(same_path / "data"),
            "CUTLINE_DAM_ADAPTER": "object-store",
            "CUTLINE_BATCH_RUNNER": "task-workers",
            "CUTLINE_BATCH_SIZE": "2",
            "CUTLINE_STRANDED_AFTER_SECONDS": str(STRANDED_AFTER_SECONDS),
            **_s3_env(s3),
        }
        # Everything of this machine a host must not see: every test folder (the other host,
        # the desk, the server) and the project checkout (code comes from the host's copy).
        made.append(Host(name, folder, same_path, env, [tmp_path, PROJECT_ROOT], unshare))
    try:
        yield made[0], made[1]
    finally:
        for host in made:
            host.stop()
        same_path.rmdir()


@dataclass
class Desk:
    """A producer's or retoucher's machine: its own home, the API URL and nothing else (the
    producer's desk also has the studio's S3 settings)."""

    folder: Path
    env: dict[str, str]

    def cutline(self, *args: str, s3: bool = False) -> subprocess.CompletedProcess:
        """A `cutline` command typed at this desk, with or without the S3 settings."""
        env = self.env if s3 else {k: v for k, v in self.env.items() if "_S3_" not in k}
        return subprocess.run(
            [sys.executable, "-m", "cutline", *args],
            env=env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=600,
        )


def _desk(tmp_path: Path, api: str, s3: s3server.SeaweedS3) -> Desk:
    folder = tmp_path / "desk"
    (folder / "home").mkdir(parents=True)
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(folder / "home"),
        "PREFECT_HOME": str(folder / "home" / ".prefect"),
        "PREFECT_API_URL": api,
        **_s3_env(s3),
    }
    return Desk(folder, env)


def _upload_shoot(tmp_path: Path, bucket: str) -> tuple[str, list[Sample]]:
    """14 products on S3 with a manifest: 12 of the auto-lane kinds, 2 glassware (review)."""
    kinds = [s for s in DEFAULT_SAMPLES if s.category != "glassware"]
    glass = next(s for s in DEFAULT_SAMPLES if s.category == "glassware")
    samples = [
        Sample(f"H-{n:02d}_front.jpg", f"H-{n:02d}", k.category, k.shape, k.colour, k.channels)
        for n, k in enumerate(kinds * 4)
    ]
    samples += [
        Sample(f"G-{n}_front.jpg", f"G-{n}", "glassware", glass.shape, glass.colour) for n in (1, 2)
    ]
    local = tmp_path / "shoot-source"
    write_sample_shoot(local, tuple(samples), size=(960, 720))  # a batch takes seconds
    shoot = f"s3://{bucket}/shoots/{JOB}"
    for path in local.iterdir():
        storage.write_bytes(f"{shoot}/{path.name}", path.read_bytes())
    return shoot, samples


@contextlib.contextmanager
def _client(api: str):
    """A Prefect client of the test process talking to ``api``."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        yield c


def _claims(out: str) -> dict[tuple[int, int], dict]:
    """Every task run's claim of a batch attempt so far, by (batch index, attempt)."""
    loc = storage.locate(f"{out}/{JOB}/batch-attempts")
    if not loc.fs.exists(loc.path):
        return {}
    loc.fs.invalidate_cache()
    claims = {}
    for path in loc.fs.find(loc.path):
        if path.endswith(".json"):
            index, attempt = Path(path).stem.split("-")
            claims[int(index), int(attempt)] = json.loads(loc.fs.cat_file(path))
    return claims


def _finished(out: str) -> dict[int, dict]:
    """Who finished each batch so far (its record's ``worker``), by batch index."""
    loc = storage.locate(f"{out}/{JOB}/batches")
    if not loc.fs.exists(loc.path):
        return {}
    loc.fs.invalidate_cache()
    records = {int(Path(p).stem): json.loads(loc.fs.cat_file(p)) for p in loc.fs.find(loc.path)}
    return {index: r["worker"] for index, r in records.items() if "worker" in r}


def _listed_task_workers(client) -> set[str]:
    from flows.batch_task import process_batch_on_task_worker
    from flows.batches_on_task_workers import WorkerWatch

    watch = WorkerWatch(process_batch_on_task_worker.task_key)
    watch.poll(client)
    return watch.live


def test_a_shoot_survives_losing_one_of_two_worker_hosts(tmp_path, prefect_api, s3, bucket, hosts):
    from dam_adapters import ApprovalState
    from dam_adapters.object_store import ObjectStoreCatalog

    host_a, host_b = hosts
    desk = _desk(tmp_path, prefect_api, s3)
    roots = [host_a.folder, host_b.folder, desk.folder, tmp_path / "server"]
    for one in roots:  # no shared local folder
        assert all(one == other or not one.is_relative_to(other) for other in roots)

    # The server host's one-time set-up, done from a host's copy of the project.
    host_a.run(
        host_a.python, "-m", "prefect", "work-pool", "create", "cutline", "--type", "process"
    )
    host_a.run(host_a.python, "-m", "prefect", "--no-prompt", "deploy", "--all", cwd="code")
    deployed = _deployments(prefect_api)
    assert len(deployed) == len(deployment_names())  # every deployment of prefect.yaml
    for pool, pull, entrypoint in deployed.values():
        assert pool == "cutline"
        # Each worker imports the flows from the Cutline installed on its host (a module
        # path); no pull step, so nothing names the deploying host's folder.
        assert not pull and entrypoint.startswith("flows."), (pull, entrypoint)
    for host in hosts:
        host.start_worker()
        host.start_task_worker(f"s3://{bucket}/task-runs")
    with _client(prefect_api) as client:
        wanted = {host.task_worker_id for host in hosts}
        wait_until(
            lambda: wanted <= _listed_task_workers(client), "both task workers to subscribe", 120
        )

    shoot, samples = _upload_shoot(tmp_path, bucket)
    out = f"s3://{bucket}/out"
    submitted = desk.cutline("run", shoot, "--job-id", JOB, "--out", out, "--detach", s3=True)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    shoot_run = UUID(re.search(r"runs/flow-run/([0-9a-f-]{36})", submitted.stdout).group(1))
    # Right after --detach, before any worker took the run: status finds it and says so.
    early = desk.cutline("status", JOB)
    assert early.returncode == 0, early.stdout + early.stderr
    assert early.stdout.startswith(f"{JOB}: ") and "None" not in early.stdout, early.stdout

    # The host not running the shoot itself dies once its task worker has finished a batch
    # and has just begun another: a claim that was not there at the previous look.
    seen: set[tuple[int, int]] = set()

    def victim_mid_shoot():
        for host in hosts:
            host.look()
        assert not client.read_flow_run(shoot_run).state.is_final(), "the shoot ended first"
        claims, finished = _claims(out), _finished(out)
        new, seen_before = set(claims) - seen, set(seen)
        seen.update(claims)
        owner = next((h for h in hosts if str(shoot_run) in h.runs), None)
        if owner is None or not seen_before:
            return None
        victim = host_b if owner is host_a else host_a
        mine = victim.task_worker_id
        if not any(w["task_worker"] == mine for w in finished.values()):
            return None
        begun = [
            {**claims[key], "index": key[0]}
            for key in new
            if claims[key]["worker"] == mine and key[0] not in finished
        ]
        return (owner, victim, begun[0]) if begun else None

    with _client(prefect_api) as client:
        owner, victim, killed = wait_until(victim_mid_shoot, "a host to be mid-batch", 600, 0.2)
        victim.die()
        assert owner.worker.poll() is None and owner.task_worker.poll() is None

        def shoot_done():
            owner.look()
            run = client.read_flow_run(shoot_run)
            return run if run.state.is_final() else None

        run = wait_until(shoot_done, "the shoot to finish on the surviving host", 900, 2)
        assert run.state.is_completed(), (
            run.state,
            (owner.folder / "worker.log").read_text()[-4000:],
        )
        lost = client.read_task_run(UUID(killed["task_run_id"]))

    # The dead host's batch: its task run marked Crashed, naming the lost worker, and the
    # batch run again by the surviving host's task worker.
    assert lost.state.is_crashed() and victim.task_worker_id in lost.state.message, lost.state
    finished = _finished(out)
    redone = finished[killed["index"]]
    assert redone["task_worker"] == owner.task_worker_id, redone
    assert redone["attempt"] > killed["attempt"]
    # Each host ran all its batches in its one task worker process, with one model session
    # loaded once for them all (not a process, a Prefect import and a model load per batch).
    by_host = {host.name: host.task_worker_id for host in hosts}
    assert {w["host"] for w in finished.values()} == set(by_host)
    assert all(w["task_worker"] == by_host[w["host"]] for w in finished.values()), finished
    assert {w["model_sessions"] for w in finished.values()} == {1}
    status = desk.cutline("status", JOB, "--json")  # every stage of every batch, done
    assert status.returncode == 0, status.stdout + status.stderr
    stages = json.loads(status.stdout)["stages"]
    assert {s["stage"]: s["completed"] for s in stages} == {
        s["stage"]: len(finished) for s in stages
    }, stages

    # Every input in the ledger once; the review lane waits for a retoucher.
    rows = read_ledger(f"{out}/{JOB}/ledger.csv")
    assert sorted(r["source_name"] for r in rows) == sorted(s.filename for s in samples)
    lanes = {r["sku"]: r["lane"] for r in rows}
    assert lanes["G-1"] == lanes["G-2"] == "review", lanes
    assert set(lanes.values()) <= {"auto", "review"}, [r["error"] for r in rows if r["error"]]

    # Reviews decided from the desk, with only the API URL: they run on the surviving host.
    listed = desk.cutline("review", "list", "--job", JOB, "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    reviews = json.loads(listed.stdout)
    assert sorted(e["sku"] for e in reviews) == sorted(
        s for s, lane in lanes.items() if lane == "review"
    )
    first_signoff = _waiting_signoff(prefect_api, None)
    for entry in reviews:
        decided = desk.cutline(
            "review", "resume", entry["run_id"], "--approve", "--by", "Kim Retoucher"
        )
        assert decided.returncode == 0, decided.stdout + decided.stderr
        assert "landed" in decided.stdout

    rows = read_ledger(f"{out}/{JOB}/ledger.csv")
    for row in rows:
        if row["lane"] == "review":
            assert row["review_state"] == "approved" and row["reviewed_by"] == "Kim Retoucher", row
    catalog = ObjectStoreCatalog(f"{out}/_catalog")
    assets = catalog.list_job(JOB)
    assert len(assets) == len(rows) == len(samples)  # ledger rows == DAM records == inputs
    assert len({a.dam_id for a in assets}) == len({a.content_hash for a in assets}) == len(assets)
    assert {a.dam_id for a in assets} == {r["dam_id"] for r in rows}

    # The sign-off the last review asked for, answered from the desk.
    _waiting_signoff(prefect_api, first_signoff)
    # The client's link, issued at the desk, is fetched over HTTP by a process that shares no
    # disk with the hosts (they cannot see this test's folders, nor it theirs).
    issued = desk.cutline("signoff", "link", JOB, "--out", out, "--days", "1", s3=True)
    assert issued.returncode == 0, issued.stdout + issued.stderr
    link = issued.stdout.split()[0]
    assert link.startswith(s3.endpoint), link  # a presigned URL of the sheet on S3
    index = httpx.get(link, timeout=30)
    assert index.status_code == 200, index.text[:500]
    assert f"Shoot {JOB}: {len(samples)} assets" in index.text  # the client's sheet
    # The sheet's pages are presigned objects too (a page in a bucket cannot link relatively).
    pages = [html.unescape(u) for u in re.findall(r'href="([^"]+page-\d+\.html[^"]*)"', index.text)]
    assert pages and all(u.startswith(s3.endpoint) for u in pages), index.text[:1000]
    sheet = "".join(httpx.get(u, timeout=30).raise_for_status().text for u in pages)
    assert all(sku in sheet for sku in lanes), "the pages list every SKU of the shoot"
    signed = desk.cutline("signoff", "resume", JOB, "--approve", "--by", "Pat Producer")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    final = catalog.list_job(JOB)
    assert {a.approval_state for a in final} == {ApprovalState.SIGNED_OFF}, final
    assert len(final) == len(samples)

    # Nothing ran on the desk: it started no worker process, and the deployments are still
    # the pool's, as `prefect deploy` registered them.
    assert not (desk.folder / "home" / ".cutline" / "run" / "worker.pid").exists()
    assert {pool for pool, _, _ in _deployments(prefect_api).values()} == {"cutline"}
    # The hosts kept to their own folders (the others were hidden from them): each wrote its
    # temporary files into its own, and no shared state names a folder of one machine.
    for host in hosts:
        assert any((host.folder / "tmp").iterdir()), host.name
    for uri in _all_objects(out):
        text = storage.read_bytes(uri)
        assert str(tmp_path).encode() not in text, uri


def _deployments(api: str) -> dict[str, tuple[str | None, object, str]]:
    with _client(api) as client:
        return {
            d.name: (d.work_pool_name, d.pull_steps, d.entrypoint)
            for d in client.read_deployments()
        }


def _all_objects(out: str) -> list[str]:
    loc = storage.locate(out)
    return [f"s3://{path}" for path in loc.fs.find(loc.path)]


def _waiting_signoff(api: str, not_this: str | None) -> str:
    """The id of the sign-off run of the job waiting for the producer (one other than
    ``not_this``, the sign-off it replaces)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline.services.signoff_queue import signoff_run_for

    def waiting():
        with temporary_settings(updates={PREFECT_API_URL: api}):
            entry = signoff_run_for(JOB, api)
        return entry.run_id if entry and entry.run_id != not_this else None

    return wait_until(waiting, f"a sign-off of {JOB} waiting", 300, 1)
