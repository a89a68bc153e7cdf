"""A shoot's batches on long-lived Prefect task workers (CUTLINE_BATCH_RUNNER=task-workers).

Two `cutline task-worker` processes, each with a HOME, PREFECT_HOME and CUTLINE_DATA_ROOT
of its own, share nothing with the shoot but the Prefect server, the shared task storage
(the `cutline-storage/batch-runs` block) and the job folder. Each loads the model once for
all its batches; one killed mid-batch loses nothing: the shoot gives its batches to the
other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cutline.base.settings import PROJECT_ROOT, BatchRunner, CutlineSettings
from cutline.imaging.samples import DEFAULT_SAMPLES, Sample, write_sample_shoot
from cutline.records.ledger import read_ledger
from flows.batch_attempts import allow_attempt, claim_attempt, read_claim, still_allowed
from tests.contexts import shoot_context
from tests.waiting import wait_until

SHOOT_TIMEOUT = 900


def test_batch_runner_keeps_the_old_switch_working():
    assert CutlineSettings().batch_execution == BatchRunner.IN_PROCESS
    assert CutlineSettings(distribute_batches=True).batch_execution == BatchRunner.FLOW_RUNS
    chosen = CutlineSettings(batch_runner="task-workers", distribute_batches=True)
    assert chosen.batch_execution == BatchRunner.TASK_WORKERS  # the new setting wins
    assert CutlineSettings(batch_runner="in-process", distribute_batches=True).batch_execution == (
        BatchRunner.IN_PROCESS
    )


def test_an_attempt_given_up_before_it_starts_never_works(tmp_path):
    ctx = shoot_context(tmp_path, "ATTEMPTS-1")
    allow_attempt(ctx, 0, 1)
    allow_attempt(ctx, 0, 2)  # the shoot gave attempt 1 up (its worker looked lost)
    assert read_claim(ctx, 0, 1) is None  # ... and saw it had not started: it resubmits
    assert not claim_attempt(ctx, 0, 1, "run-1")  # attempt 1 starting late stands down
    assert claim_attempt(ctx, 0, 2, "run-2")
    assert read_claim(ctx, 0, 1)["task_run_id"] == "run-1"


def test_an_attempt_that_started_first_is_seen_by_the_shoot(tmp_path):
    ctx = shoot_context(tmp_path, "ATTEMPTS-2")
    allow_attempt(ctx, 0, 1)
    assert claim_attempt(ctx, 0, 1, "run-1")  # started before the shoot gave it up
    allow_attempt(ctx, 0, 2)
    claim = read_claim(ctx, 0, 1)  # the shoot looks for the claim after allowing attempt 2
    assert claim is not None and claim["pid"] == os.getpid()
    assert not still_allowed(ctx, 0, 1)  # between stages, attempt 1 learns it was replaced


@pytest.mark.slow
def test_cutline_storage_block_on_s3(bucket):
    from cutline.base.task_storage import CutlineStorage

    block = CutlineStorage(basepath=f"s3://{bucket}/task-runs")
    block.write_path("parameters/abc", b"payload")
    assert block.read_path("parameters/abc") == b"payload"
    assert block.read_path(f"s3://{bucket}/task-runs/parameters/abc") == b"payload"
    block.delete_path("parameters/abc")
    with pytest.raises(FileNotFoundError):
        block.read_path("parameters/abc")


@dataclass
class TaskWorkerHost:
    """One `cutline task-worker` process with a home and data root of its own."""

    name: str
    process: subprocess.Popen
    log: Path

    @property
    def worker_id(self) -> str:
        """Its id among the Prefect server's task workers (host name and process id)."""
        return f"{socket.gethostname()}-{self.process.pid}"


def _listed_workers(task_key: str) -> set[str]:
    from prefect.client.orchestration import get_client

    from flows.batches_on_task_workers import WorkerWatch

    watch = WorkerWatch(task_key)
    with get_client(sync_client=True) as client:
        watch.poll(client)
    return watch.live


@pytest.fixture
def task_workers(prefect_server, model_home, tmp_path, settings) -> Iterator[list[TaskWorkerHost]]:
    """Shared task storage set up once, then two task workers of one batch at a time."""
    from cutline.ops.task_worker import set_up_storage
    from flows.batch_task import process_batch_on_task_worker

    set_up_storage(str(tmp_path / "shared-task-storage"), settings)
    hosts = []
    for name in ("host-a", "host-b"):
        home = tmp_path / name
        (home / "home").mkdir(parents=True)
        env = {
            **os.environ,
            "PREFECT_API_URL": prefect_server,
            "HOME": str(home / "home"),
            "PREFECT_HOME": str(home / "prefect"),
            "CUTLINE_DATA_ROOT": str(home / "data"),
            "CUTLINE_MODEL_HOME": str(model_home),
        }
        log = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "cutline", "task-worker", "--limit", "1"],
            env=env,
            cwd=home,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        hosts.append(TaskWorkerHost(name, process, log))
    try:
        wanted = {host.worker_id for host in hosts}
        wait_until(
            lambda: (
                wanted <= _listed_workers(process_batch_on_task_worker.task_key)
                or any(host.process.poll() is not None for host in hosts)
            ),
            "both task workers to subscribe",
            timeout=120,
        )
        for host in hosts:
            assert host.process.poll() is None, host.log.read_text()[-3000:]
        yield hosts
    finally:
        for host in hosts:
            if host.process.poll() is None:
                os.killpg(host.process.pid, signal.SIGTERM)
        for host in hosts:
            try:
                host.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(host.process.pid, signal.SIGKILL)
                host.process.wait()


def _start_shoot(
    prefect_server: str, shoot: Path, out: Path, job_id: str, **settings: str
) -> subprocess.Popen:
    code = (
        "from flows.process_shoot import process_shoot; "
        f"s = process_shoot(shoot={str(shoot)!r}, job_id={job_id!r}, output_root={str(out)!r}); "
        "print(s.lanes)"
    )
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "CUTLINE_BATCH_RUNNER": "task-workers",
        "CUTLINE_BATCH_SIZE": "1",
        "CUTLINE_SIGNOFF_DEPLOYMENT": "",
        **settings,
    }
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(shoot: subprocess.Popen) -> None:
    stdout, stderr = shoot.communicate(timeout=SHOOT_TIMEOUT)
    assert shoot.returncode == 0, (stdout + stderr)[-4000:]


def _samples(prefix: str, count: int) -> tuple[Sample, ...]:
    return tuple(
        Sample(f"{prefix}-{n}_front.jpg", f"{prefix}-{n}", "homeware", s.shape, s.colour)
        for n, s in enumerate((DEFAULT_SAMPLES * 4)[:count])
    )


def _batch_records(job: Path) -> dict[int, dict]:
    return {
        int(path.stem): json.loads(path.read_text())
        for path in sorted((job / "batches").glob("*.json"))
    }


def _assert_every_input_once(job: Path, samples: tuple[Sample, ...], settings) -> None:
    from dam_adapters.local_catalog import LocalCatalog

    rows = read_ledger(str(job / "ledger.csv"))
    assert sorted(r["sku"] for r in rows) == sorted(s.sku for s in samples)
    assert all(r["lane"] in {"auto", "review"} for r in rows), [r["error"] for r in rows]
    assets = LocalCatalog(settings.resolved_catalog_dir).list_job(job.name)
    auto = [r for r in rows if r["lane"] == "auto"]
    assert len(assets) == len(auto)  # one DAM record per auto-lane image, none twice
    assert {a.dam_id for a in assets} == {r["dam_id"] for r in auto}


@pytest.mark.slow
def test_two_task_workers_share_a_shoot_and_load_the_model_once(
    task_workers, prefect_server, tmp_path, settings
):
    samples = _samples("TW", 8)
    write_sample_shoot(tmp_path / "shoot", samples, size=(320, 240))
    _finish(_start_shoot(prefect_server, tmp_path / "shoot", tmp_path / "out", "TASKW-1"))
    job = tmp_path / "out" / "TASKW-1"
    _assert_every_input_once(job, samples, settings)
    records = _batch_records(job)
    assert len(records) == len(samples)  # batches of one
    by_worker: dict[str, list[dict]] = {}
    for record in records.values():
        by_worker.setdefault(record["worker"]["task_worker"], []).append(record["worker"])
    assert set(by_worker) == {host.worker_id for host in task_workers}, "both should run batches"
    for worker, ran in by_worker.items():
        assert len(ran) >= 2, f"{worker} ran one batch: the model-once check needs several"
        # one model session in the process after every batch: loaded once, then reused
        assert {r["model_sessions"] for r in ran} == {1}, (worker, ran)
    assert all(host.process.poll() is None for host in task_workers)


@pytest.mark.slow
def test_a_task_worker_killed_mid_batch_loses_nothing(
    task_workers, prefect_server, tmp_path, settings
):
    from prefect.client.orchestration import get_client

    victim, survivor = task_workers
    samples = _samples("KW", 8)
    write_sample_shoot(tmp_path / "shoot", samples, size=(640, 480))
    job = tmp_path / "out" / "TASKW-KILL"
    shoot = _start_shoot(prefect_server, tmp_path / "shoot", tmp_path / "out", "TASKW-KILL")
    try:

        def victim_mid_batch() -> dict | None:
            """A claim of the victim whose batch it has not finished."""
            records = _batch_records(job) if (job / "batches").is_dir() else {}
            for path in sorted((job / "batch-attempts").glob("*-*.json")):
                claim = json.loads(path.read_text())
                index = int(path.stem.split("-")[0])
                done = records.get(index, {}).get("worker", {}).get("attempt")
                if claim["worker"] == victim.worker_id and done != claim["attempt"]:
                    return {**claim, "index": index}
            assert shoot.poll() is None, "the shoot ended before a batch could be interrupted"
            return None

        killed = wait_until(victim_mid_batch, "the victim to start a batch", timeout=300)
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        _finish(shoot)
    finally:
        if shoot.poll() is None:
            shoot.kill()
    _assert_every_input_once(job, samples, settings)
    records = _batch_records(job)
    redone = records[killed["index"]]["worker"]
    assert redone["task_worker"] == survivor.worker_id, "the killed batch was not run again"
    assert redone["attempt"] > killed["attempt"]
    assert survivor.process.poll() is None
    with get_client(sync_client=True) as client:
        lost = client.read_task_run(killed["task_run_id"])
    assert lost.state.is_crashed(), lost.state  # the UI says what became of the lost run
    assert victim.worker_id in lost.state.message


@pytest.mark.slow
def test_a_shoot_without_task_workers_fails_saying_so(prefect_server, tmp_path, settings):
    from cutline.ops.task_worker import set_up_storage

    set_up_storage(str(tmp_path / "shared-task-storage"), settings)
    samples = _samples("NW", 2)
    write_sample_shoot(tmp_path / "shoot", samples, size=(320, 240))
    shoot = _start_shoot(
        prefect_server,
        tmp_path / "shoot",
        tmp_path / "out",
        "TASKW-NONE",
        CUTLINE_STRANDED_AFTER_SECONDS="35",  # the shortest allowed
    )
    stdout, stderr = shoot.communicate(timeout=SHOOT_TIMEOUT)
    assert shoot.returncode != 0
    assert "no task worker served task process_batch_on_task_worker" in stdout + stderr
    rows = read_ledger(str(tmp_path / "out" / "TASKW-NONE" / "ledger.csv"))
    assert sorted(r["sku"] for r in rows) == sorted(s.sku for s in samples)
    assert all(r["lane"] == "failed" and "not finished" in r["error"] for r in rows)
