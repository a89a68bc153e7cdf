"""Credentials (the S3 secret key, the DAM token) appear nowhere a person or another system
can read them: logs (API and files), artifacts, ledgers and outputs, run parameters, state
messages and errors, the Prefect database, and the payloads sent to the DAM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutline.base import storage
from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.records.ledger import read_ledger
from tests import s3server
from tests.dam_http_server import DamServer

pytestmark = pytest.mark.slow

DAM_TOKEN = "dam-token-5e0c1b-never-to-be-shown"


def _readable_files(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 200_000_000:
            yield path


@pytest.fixture
def secret_run(s3, bucket, prefect_server, model_home, tmp_path, settings):
    local = tmp_path / "shoot"
    write_sample_shoot(local, DEFAULT_SAMPLES, size=(400, 300))
    (local / "broken.jpg").write_bytes(b"not a photo")
    for path in local.iterdir():
        storage.write_bytes(f"s3://{bucket}/shoot/{path.name}", path.read_bytes())
    with DamServer(DAM_TOKEN) as dam:
        # One image's registration fails after its retry (the run's first DAM request lists
        # the job, so the failure waits for the first POST).
        dam.state.fail_one_request(500, times=2, method="POST")
        env = {
            **os.environ,
            "CUTLINE_DAM_ADAPTER": "http",
            "CUTLINE_DAM_HTTP_BASE_URL": dam.url,
            "CUTLINE_DAM_HTTP_TOKEN": DAM_TOKEN,
            "CUTLINE_DAM_HTTP_MAX_RETRIES": "1",
            "CUTLINE_DAM_HTTP_MAX_BACKOFF": "1",
            "PREFECT_API_URL": prefect_server,
            "PREFECT_LOGGING_TO_API_ENABLED": "true",
            "PREFECT_LOGGING_LEVEL": "DEBUG",
        }
        shoot = f"s3://{bucket}/shoot"
        # A process of its own runs the shoot with the HTTP DAM's token in its environment,
        # as a worker configured for that DAM does.
        command = [sys.executable, "-m", "flows.process_shoot", shoot, "SEC-1"]
        command += ["--manifest", f"{shoot}/manifest.csv", "--out", f"s3://{bucket}/out"]
        run = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        requests = list(dam.state.requests)
    assert run.returncode == 0, run.stdout + run.stderr
    return run, requests, bucket


def test_credentials_appear_nowhere(secret_run, settings):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterName,
        FlowRunFilterTags,
        LogFilter,
        LogFilterFlowRunId,
    )

    run, requests, bucket = secret_run
    secrets = [s3server.SECRET_KEY, DAM_TOKEN]
    texts: dict[str, str] = {"shoot process output": run.stdout + run.stderr}

    rows = read_ledger(f"s3://{bucket}/out/SEC-1/ledger.csv")
    failed_at_dam = [r for r in rows if r["error"].startswith("register")]
    assert len(failed_at_dam) == 1 and "500" in failed_at_dam[0]["error"]  # an error to search
    loc = storage.locate(f"s3://{bucket}/out")
    for path in loc.fs.find(loc.path):  # ledger, summary, batches, state, XMP in renditions
        texts[path] = loc.fs.cat_file(path).decode("latin-1")
    for path in _readable_files(settings.data_root):  # server and worker logs, Prefect's DB
        texts[str(path)] = path.read_bytes().decode("latin-1")
    for request in requests:
        texts[f"DAM {request.method} {request.path}"] = request.body.decode("latin-1")
    # The token is sent, and only to the DAM: with every write, and no request carries another
    # value. A request without it can only be a read of the job's assets: the sign-off run the
    # shoot starts runs in the worker process, whose environment (the test stack's) has no DAM
    # token; when it reaches the DAM before the shoot ends, that read goes without one.
    bearer = f"Bearer {DAM_TOKEN}"
    writes = [r for r in requests if r.method != "GET"]
    assert writes and all(r.headers.get("Authorization") == bearer for r in writes)
    unsent = {(r.method, r.path) for r in requests if r.headers.get("Authorization") is None}
    assert unsent <= {("GET", "/assets")}, unsent
    assert {r.headers.get("Authorization") for r in requests} <= {bearer, None}

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["job:SEC-1"]))
        )
        runs += client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["SEC-1"]))
        )
        assert any(r.name == "SEC-1" for r in runs) and len(runs) >= 2  # the shoot and a review
        ids = [r.id for r in runs]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
        )
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
    assert logs and artifacts and task_runs
    for flow_run in runs:
        texts[f"parameters of {flow_run.name}"] = json.dumps(flow_run.parameters)
        texts[f"state of {flow_run.name}"] = f"{flow_run.state.name} {flow_run.state.message}"
    for task_run in task_runs:
        state = task_run.state
        texts[f"state of {task_run.name}"] = (
            f"{state.name if state else ''} {state.message if state else ''}"
        )
    texts["API logs"] = "\n".join(log.message for log in logs)
    for artifact in artifacts:
        texts[f"artifact {artifact.key}"] = json.dumps(artifact.data, default=str) + str(
            artifact.description
        )

    leaks = [(where, s) for where, text in texts.items() for s in secrets if s in text]
    assert leaks == []
