"""The deployments of prefect.yaml as a producer uses them: typed, described, runnable."""

from __future__ import annotations

import pytest

from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.ops.deployments import deployment_names
from cutline.records.ledger import read_ledger

pytestmark = pytest.mark.slow


def test_stack_serves_every_deployment_declared_in_prefect_yaml(prefect_server):
    from prefect.client.orchestration import get_client

    assert deployment_names() == [
        "process-shoot/shoot",
        "review-cutout/review",
        "process-batch/batch",
        "escalate-reviews/escalate",
        "evaluate-cutouts/eval",
        "signoff-shoot/signoff",
        "reopen-assets/reopen",
    ]
    with get_client(sync_client=True) as client:
        shoot = client.read_deployment_by_name("process-shoot/shoot")
        review = client.read_deployment_by_name("review-cutout/review")
        escalate = client.read_deployment_by_name("escalate-reviews/escalate")
        evaluate = client.read_deployment_by_name("evaluate-cutouts/eval")
    props = shoot.parameter_openapi_schema["properties"]
    assert set(shoot.parameter_openapi_schema["required"]) == {"shoot", "job_id"}
    for name in ("shoot", "job_id", "manifest", "output_root"):
        assert props[name].get("description"), f"{name} needs a description for the Custom run form"
    assert shoot.enforce_parameter_schema and shoot.description
    assert shoot.global_concurrency_limit.limit == 2
    assert shoot.concurrency_options.collision_strategy == "ENQUEUE"
    assert {"item", "ctx"} <= set(review.parameter_openapi_schema["properties"])
    assert not escalate.schedules, "escalation runs in the stack's worker, not as 288 runs a day"
    assert evaluate.parameter_openapi_schema["required"] == ["data"]
    assert evaluate.parameter_openapi_schema["properties"]["models"].get("description")


def test_producer_triggers_a_shoot_through_the_deployment(prefect_server, model_home, tmp_path):
    from prefect.deployments import run_deployment

    shoot = tmp_path / "shoot"
    write_sample_shoot(shoot, DEFAULT_SAMPLES[:2], size=(320, 240))
    run = run_deployment(
        "process-shoot/shoot",
        parameters={
            "shoot": str(shoot),
            "job_id": "DEP-0001",
            "manifest": str(shoot / "manifest.csv"),
            "output_root": str(tmp_path / "out"),
        },
        timeout=300,
        as_subflow=False,
    )
    assert run.state.is_completed(), run.state
    assert run.name == "DEP-0001"
    rows = read_ledger(str(tmp_path / "out" / "DEP-0001" / "ledger.csv"))
    assert sorted(r["sku"] for r in rows) == ["SKU-1001", "SKU-1002"]
    assert all(r["lane"] in {"auto", "review"} for r in rows)


def test_a_shoot_started_from_the_ui_routes_by_the_manifest_in_its_folder(
    prefect_server, model_home, settings, tmp_path
):
    """The UI's Custom run sends only what the form holds: the flow itself finds
    SHOOT/manifest.csv, so glassware still goes to review, and says which CSV it did not use."""
    from prefect.deployments import run_deployment

    from cutline.records.summary import ShootSummary

    shoot = tmp_path / "shoot"
    glass = next(s for s in DEFAULT_SAMPLES if s.category == "glassware")
    write_sample_shoot(shoot, (DEFAULT_SAMPLES[0], glass), size=(320, 240))
    (shoot / "retouch-notes.csv").write_text("filename,note\nx.jpg,keep the shadow\n")
    run = run_deployment(
        "process-shoot/shoot",
        parameters={"shoot": str(shoot), "job_id": "UI-MANIFEST-1"},  # the form's required fields
        timeout=300,
        as_subflow=False,
    )
    assert run.state.is_completed(), run.state
    job = settings.resolved_output_root / "UI-MANIFEST-1"
    rows = {r["sku"]: r for r in read_ledger(str(job / "ledger.csv"))}
    assert rows[glass.sku]["category"] == "glassware" and rows[glass.sku]["lane"] == "review"
    assert "category:glassware" in rows[glass.sku]["rules"].split(";")
    assert rows[DEFAULT_SAMPLES[0].sku]["category"] == DEFAULT_SAMPLES[0].category
    summary = ShootSummary.model_validate_json((job / "summary.json").read_text())
    assert summary.manifest == str(shoot / "manifest.csv")
    (warning,) = summary.warnings
    assert "retouch-notes.csv was not used as the manifest" in warning
    assert str(shoot / "manifest.csv") not in summary.ignored_files


def test_the_stack_is_a_server_a_work_pool_and_a_worker(prefect_server, settings):
    """`cutline up` runs Prefect's production shape on one machine: the deployments of
    prefect.yaml on a process work pool, imported from the installed package, and a worker
    polling the pool (the UI's dashboard shows it); `cutline stack-status` says so."""
    import os
    import subprocess
    import sys

    from prefect.client.orchestration import get_client

    from cutline.base.code_version import code_version
    from cutline.ops import stack
    from cutline.ops.deployments import pull_steps

    result = subprocess.run(
        [sys.executable, "-m", "cutline", "stack-status"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": up (UI " in result.stdout
    running = f"worker: running (pid {stack.worker_pid(settings)}), polling work pool "
    assert running in result.stdout
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(settings.work_pool)
        workers = client.read_workers_for_work_pool(settings.work_pool)
        for name in deployment_names():
            deployment = client.read_deployment_by_name(name)
            assert deployment.work_pool_name == settings.work_pool, name
            assert deployment.pull_steps == pull_steps() == [], name
            # imported from the installed Cutline, registered from this code
            assert deployment.entrypoint.startswith("flows."), deployment.entrypoint
            assert deployment.version.startswith(f"cutline {code_version()} spec "), name
    assert pool.type == "process" and not pool.is_paused
    assert [w.status.value for w in workers] == ["ONLINE"]


def test_job_variables_of_a_run_reach_its_process(prefect_server, model_home, tmp_path, settings):
    """A run's job variables (the Custom run's "Job variables" box) are applied by the worker
    as Prefect documents: an ``env`` entry is in the run's environment."""
    import json

    from prefect.deployments import run_deployment

    write_sample_shoot(tmp_path / "shoot", DEFAULT_SAMPLES[:2], size=(320, 240))
    run = run_deployment(
        "process-shoot/shoot",
        parameters={"shoot": str(tmp_path / "shoot"), "job_id": "JOBVARS-1"},
        job_variables={"env": {"CUTLINE_BATCH_SIZE": "3"}},
        timeout=600,
    )
    assert run.state.is_completed(), run.state
    job = settings.resolved_output_root / "JOBVARS-1"
    config = json.loads((job / "run-config.json").read_text())
    assert config["batch_size"] == 3  # the worker's own setting is the default, 16
