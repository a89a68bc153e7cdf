"""Ops rerun a shoot from the Prefect UI: a shoot started with `cutline run` is a run of the
process-shoot/shoot deployment, so the UI offers Retry, and the retried run lands the same
assets without registering anything twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.records.ledger import read_ledger
from cutline.services.review_queue import read_run
from dam_adapters.local_catalog import LocalCatalog
from tests.reviews import decide, form_description, ui_form, wait_for_reviews
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

JOB = "RETRY-0001"


def test_ops_retry_a_cli_started_shoot_from_the_prefect_ui(
    prefect_server, model_home, settings, tmp_path, artifacts_dir, browser_page
):
    """Issue 30 too: Retry of an unchanged shoot keeps the waiting sign-off; after sign-off
    it asks for none; the run page shows the time chart and a current review queue; a
    producer reopens a signed-off SKU from the UI's Custom run."""
    from prefect.client.orchestration import get_client

    from cutline.services.signoff_queue import signoff_runs

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

    def one_form():
        live = signoff_runs(JOB, ["SCHEDULED", "PENDING", "RUNNING", "PAUSED"])
        return live if len(live) == 1 and live[0].state.is_paused() else None

    (first_form,) = wait_until(one_form, "the shoot's sign-off form", timeout=120)
    signoffs_before = {str(r.id) for r in signoff_runs(JOB, EVERY)}
    run = _retry_in_the_ui(page, settings, run_id, artifacts_dir, "retry-shoot.png")
    assert run.state.is_completed(), run.state
    assert ledger.stat().st_mtime_ns > written  # the shoot really ran again
    assert {r["sku"]: r["lane"] for r in read_ledger(str(ledger))} == lanes
    assert {r.dam_id: r.revision for r in catalog.list_job(JOB)} == assets  # nothing twice

    # The retried run of the unchanged shoot kept the form that waits (issue 30: a Retry or
    # a nightly schedule no longer replaces it): exactly one form, the one its summary names.
    summary = json.loads((out / JOB / "summary.json").read_text())

    (waiting,) = wait_until(one_form, "one sign-off form for the retried shoot", timeout=120)
    assert str(waiting.id) == summary["signoff_run_id"] == str(first_form.id)
    assert "covers the same assets" in summary["signoff_note"]
    assert {str(r.id) for r in signoff_runs(JOB, EVERY)} == signoffs_before
    assert not signoff_runs(JOB, ["CANCELLED"])

    # The producer's view: the sign-off form and the shoot's summary, as the README shows them.
    page.goto(f"{settings.ui_url}/runs/flow-run/{waiting.id}")
    page.get_by_role("button", name="Resume").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"Sign off shoot {JOB}").wait_for(timeout=30_000)
    signoff_text = dialog.inner_text()
    assert "In the DAM:" in signoff_text and "In the ledger:" in signoff_text
    assert "To sign off now" in signoff_text
    page.screenshot(
        path=str(artifacts_dir / "signoff-form.png"), full_page=True, animations="disabled"
    )
    page.keyboard.press("Escape")
    _open_artifact(page, settings, f"shoot-{JOB.lower()}", "Review lane:")
    page.screenshot(path=str(artifacts_dir / "shoot-summary.png"), full_page=True)
    # The time chart is on the run's page as a picture the browser really draws.
    _open_artifact(page, settings, f"shoot-{JOB.lower()}-time-chart", "where the time goes")
    chart = page.get_by_role("img", name=f"Time chart of shoot {JOB}")
    chart.wait_for(timeout=30_000)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=chart.element_handle()
    )
    assert chart.evaluate("img => img.naturalWidth") >= 400
    page.screenshot(path=str(artifacts_dir / "time-chart.png"), full_page=True)

    # Signed off, then retried again: nothing asks for sign-off, nothing is relabelled.
    signed = subprocess.run(
        [sys.executable, "-m", "cutline", "signoff", "resume", JOB, "--approve", "--by", "Pat"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr
    records = {r.dam_id: r for r in catalog.list_job(JOB)}
    assert {r.approval_state.value for r in records.values()} == {"signed-off"}
    signoffs_before = {str(r.id) for r in signoff_runs(JOB, EVERY)}
    run = _retry_in_the_ui(page, settings, run_id, artifacts_dir, "retry-signed-off.png")
    assert run.state.is_completed(), run.state
    assert {str(r.id) for r in signoff_runs(JOB, EVERY)} == signoffs_before
    assert {r.dam_id: r.revision for r in catalog.list_job(JOB)} == {
        d: r.revision for d, r in records.items()
    }
    summary = json.loads((out / JOB / "summary.json").read_text())
    assert summary["signoff_run_id"] is None and "nothing new" in summary["signoff_note"]

    # Client feedback: the producer reopens one SKU from Deployments -> reopen -> Custom run.
    sku = sorted(r.sku for r in records.values())[0]
    with get_client(sync_client=True) as client:
        reopen = client.read_deployment_by_name("reopen-assets/reopen")
    page.goto(f"{settings.ui_url}/deployments/deployment/{reopen.id}/run")
    for label, value in (
        ("job_id", JOB),
        ("skus", sku),
        ("note", "client: shadow too hard"),
        ("producer", "Pat Producer"),
        ("output_root (Optional)", str(out)),
    ):
        _property(page, label).locator("textarea, input").first.fill(value)
    page.screenshot(path=str(artifacts_dir / "reopen-custom-run.png"), full_page=True)
    page.get_by_role("button", name="Submit").click()
    (review,) = wait_for_reviews(settings, JOB, 1, timeout=180)
    assert review.sku == sku and "client: shadow too hard" in review.reasons
    # The review queue on the shoot's run page is current: it lists the reopened SKU...
    queue = _open_artifact(page, settings, f"shoot-{JOB.lower()}-review-queue", "1 waiting as of")
    (artifacts_dir / "review-queue.txt").write_text(queue)
    assert sku in queue, queue[-1500:]
    assert decide(review.run_id, ui_form("approve")).state.is_completed()
    # ... and, opened again after the decision, says nothing waits.
    _open_artifact(page, settings, f"shoot-{JOB.lower()}-review-queue", "Nothing waits")
    page.screenshot(path=str(artifacts_dir / "review-queue-current.png"), full_page=True)
    # The decision asks for sign-off of that one asset only.
    (again,) = wait_until(one_form, "a sign-off of the reopened SKU", timeout=120)
    assert f"1 asset(s) not signed off yet (SKU {sku})" in form_description(str(again.id))


EVERY = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLED", "COMPLETED"]


def _retry_in_the_ui(page, settings, run_id: str, artifacts_dir, shot: str):
    """Press Retry on the shoot's run page and wait for the retried run to end."""
    before = read_run(run_id).run_count
    page.goto(f"{settings.ui_url}/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Retry").first.click()
    confirm = page.get_by_role("dialog").get_by_role("button", name="Retry")
    if confirm.count():
        confirm.first.click()
    page.screenshot(path=str(artifacts_dir / shot), full_page=True)

    def retried():
        run = read_run(run_id)
        return run if run.run_count > before and run.state.is_final() else None

    return wait_until(retried, "the retried shoot run to finish", timeout=300, interval=1)


def _open_artifact(page, settings, key: str, text: str) -> str:
    """The newest version of the artifact ``key`` as the UI shows it, once ``text`` is on it
    (reloaded until then: the page shows what the server holds when it is opened)."""

    def shown():
        page.goto(f"{settings.ui_url}/artifacts/key/{key}")
        page.get_by_role("link", name=re.compile(r"^[0-9a-f]{8}$")).first.click()  # the latest
        page.wait_for_url(re.compile(r"/artifacts/artifact/"), timeout=30_000)
        try:
            page.get_by_text(text, exact=False).first.wait_for(timeout=10_000)
        except Exception:
            return None
        return page.locator("body").inner_text()

    return wait_until(shown, f"{text!r} on the artifact {key}", timeout=60, interval=1)


def _property(page, label: str):
    """A parameter's block in the UI's Custom run form, by its label."""
    return (
        page.locator(".schema-form-property")
        .filter(has=page.locator(".schema-form-property__label", has_text=label))
        .last
    )
