"""Ops rerun a shoot from the Prefect UI: a shoot started with `cutline run` is a run of the
process-shoot/shoot deployment, so the UI offers Retry, and the retried run lands the same
assets without registering anything twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.records.ledger import read_ledger
from cutline.services.review_queue import read_run
from dam_adapters.local_catalog import LocalCatalog
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

JOB = "RETRY-0001"


def test_ops_retry_a_cli_started_shoot_from_the_prefect_ui(
    prefect_server, model_home, settings, tmp_path, artifacts_dir, browser_page
):
    from prefect.client.orchestration import get_client

    shoot, out = tmp_path / "shoot", tmp_path / "out"
    write_sample_shoot(shoot, DEFAULT_SAMPLES[:2], size=(320, 240))  # footwear, homeware
    cli = subprocess.run(
        [sys.executable, "-m", "cutline", "run", str(shoot), "--job-id", JOB, "--out", str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    run_id = re.search(r"/runs/flow-run/([0-9a-f-]{36})", cli.stdout)[1]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("process-shoot/shoot")
    first = read_run(run_id)
    assert first.deployment_id == deployment.id and first.state.is_completed()
    ledger = out / JOB / "ledger.csv"
    lanes = {r["sku"]: r["lane"] for r in read_ledger(str(ledger))}
    written = ledger.stat().st_mtime_ns
    catalog = LocalCatalog(settings.resolved_catalog_dir)
    assets = {r.dam_id: r.revision for r in catalog.list_job(JOB)}
    assert assets, "the first run registered nothing"

    page = browser_page
    page.goto(f"{settings.ui_url}/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Retry").first.click()
    confirm = page.get_by_role("dialog").get_by_role("button", name="Retry")
    if confirm.count():
        confirm.first.click()
    page.screenshot(path=str(artifacts_dir / "retry-shoot.png"), full_page=True)

    def retried():
        run = read_run(run_id)
        return run if run.run_count >= 2 and run.state.is_final() else None

    run = wait_until(retried, "the retried shoot run to finish", timeout=300, interval=1)
    assert run.state.is_completed(), run.state
    assert ledger.stat().st_mtime_ns > written  # the shoot really ran again
    assert {r["sku"]: r["lane"] for r in read_ledger(str(ledger))} == lanes
    assert {r.dam_id: r.revision for r in catalog.list_job(JOB)} == assets  # nothing twice

    # The retried run asked for sign-off again: exactly one form waits, the one its summary
    # names, never the first run's cancelled one (nor none).
    import json

    from cutline.services.signoff_queue import signoff_runs

    summary = json.loads((out / JOB / "summary.json").read_text())

    def one_form():
        live = signoff_runs(JOB, ["SCHEDULED", "PENDING", "RUNNING", "PAUSED"])
        return live if len(live) == 1 and live[0].state.is_paused() else None

    (waiting,) = wait_until(one_form, "one sign-off form for the retried shoot", timeout=120)
    assert str(waiting.id) == summary["signoff_run_id"]
    first_signoffs = signoff_runs(JOB, ["CANCELLED"])
    assert first_signoffs and all(str(r.id) != summary["signoff_run_id"] for r in first_signoffs)

    # The producer's view: the sign-off form and the shoot's summary, as the README shows them.
    page.goto(f"{settings.ui_url}/runs/flow-run/{waiting.id}")
    page.get_by_role("button", name="Resume").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"Sign off shoot {JOB}").wait_for(timeout=30_000)
    signoff_text = dialog.inner_text()
    assert "In the DAM:" in signoff_text and "In the ledger:" in signoff_text
    page.screenshot(
        path=str(artifacts_dir / "signoff-form.png"), full_page=True, animations="disabled"
    )
    page.keyboard.press("Escape")
    page.goto(f"{settings.ui_url}/artifacts/key/shoot-{JOB.lower()}")
    page.get_by_role("link", name=re.compile(r"^[0-9a-f]{8}$")).first.click()  # the latest
    page.get_by_text("Review lane:", exact=False).first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "shoot-summary.png"), full_page=True)
