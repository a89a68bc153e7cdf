"""Two workers polling one work pool share a shoot's batches (PostgreSQL-backed server)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from benchmarks.postgres import fresh_database_url
from cutline.base.settings import PROJECT_ROOT, CutlineSettings
from cutline.imaging.samples import DEFAULT_SAMPLES, Sample, write_sample_shoot
from cutline.records.ledger import read_ledger

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pool_server(tmp_path, model_home):
    """A Prefect server on a fresh PostgreSQL database, a process work pool and two workers."""
    from cutline.ops import stack

    settings = CutlineSettings(
        data_root=tmp_path / "data",
        server_port=_free_port(),
        server_database_url=fresh_database_url("cutline_test_workers"),
    )
    current = stack.up(settings, worker=False)
    env = {
        **os.environ,
        "PREFECT_API_URL": current.api_url,
        "PREFECT_LOGGING_TO_API_ENABLED": "true",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "CUTLINE_DATA_ROOT": str(settings.data_root),
        "CUTLINE_MODEL_HOME": str(model_home),
    }

    def run(*args: str) -> None:
        subprocess.run(
            args, env=env, cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=300
        )

    run(sys.executable, "-m", "prefect", "work-pool", "create", "cutline", "--type", "process")
    run(sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", "batch")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                "cutline",
                "--limit",
                "1",
                "--name",
                name,
            ],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=(tmp_path / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name in ("worker-a", "worker-b")
    ]
    try:
        yield env, workers
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        stack.down(settings)


def test_two_workers_share_the_batches_of_one_shoot(pool_server, tmp_path):
    env, workers = pool_server
    shoot = tmp_path / "shoot"
    samples = tuple(
        Sample(f"W-{n}_front.jpg", f"W-{n}", "homeware", s.shape, s.colour)
        for n, s in enumerate(DEFAULT_SAMPLES * 2)
    )
    write_sample_shoot(shoot, samples, size=(320, 240))
    code = (
        "from flows.process_shoot import process_shoot; "
        f"s = process_shoot(shoot={str(shoot)!r}, job_id='POOL-1', output_root={str(tmp_path / 'out')!r}); "
        "print(s.lanes)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "CUTLINE_DISTRIBUTE_BATCHES": "true", "CUTLINE_BATCH_SIZE": "1"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(w.poll() is None for w in workers), "a worker died"
    job = tmp_path / "out" / "POOL-1"
    rows = read_ledger(str(job / "ledger.csv"))
    assert sorted(r["sku"] for r in rows) == sorted(s.sku for s in samples)
    assert all(r["lane"] in {"auto", "review"} for r in rows)
    batches = [json.loads(p.read_text()) for p in sorted((job / "batches").glob("*.json"))]
    assert len(batches) == len(samples)
    worker_pids = {b["worker"]["worker_pid"] for b in batches}
    assert worker_pids == {w.pid for w in workers}, "both workers should have run batches"
