"""The review lane against a real Prefect server, worker process and the real model.

Two shoots: the queue tests only read reviews that stay waiting (any order, any one alone), and
the retoucher's decisions are one scenario whose named steps build on each other."""

from __future__ import annotations

import json
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cutline.imaging.samples import Sample, write_sample_shoot
from cutline.ops import stack
from cutline.records.ledger import read_ledger
from cutline.services.review_queue import read_run
from dam_adapters import ApprovalState
from dam_adapters.local_catalog import LocalCatalog
from tests.reviews import (
    decide,
    form_defaults,
    form_description,
    form_schema,
    run_cli,
    ui_form,
    wait_for_reviews,
)
from tests.scenario import run_steps
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

QUEUE_JOB = "REV-QUEUE"  # reviews left waiting: the queue, the form, events, escalation
STORY_JOB = "REV-STORY"  # reviews decided step by step in one scenario
# Deadlines are days from today: OV-1 is long overdue, the others are due soon, so the queue
# order (deadline first) is OV-1, JW-1, GL-1, HB-1 on any day the suite runs.
SAMPLES = (
    Sample(
        "GL-1_front.jpg", "GL-1", "glassware", "tall", (150, 170, 190), "web", 4, "Perfume bottle."
    ),
    Sample(
        "JW-1_front.jpg", "JW-1", "jewellery", "round", (200, 170, 60), "web", 3, "Gold bangle."
    ),
    Sample("HB-1_front.jpg", "HB-1", "hair-beauty", "tall", (90, 60, 40), "web", 5, "Hair serum."),
    Sample(
        "OV-1_front.jpg", "OV-1", "glassware", "box", (160, 160, 200), "web", -30, "Long overdue."
    ),
    Sample("FW-1_front.jpg", "FW-1", "footwear", "box", (176, 48, 40), "web;social", 7, "Trainer."),
)
BY_SKU = {s.sku: s for s in SAMPLES}


def _run_review_shoot(job: str, tmp_path_factory, settings):
    """A shoot of SAMPLES with four review-lane images; returns once all four wait."""
    from flows.process_shoot import process_shoot

    folder = tmp_path_factory.mktemp(f"{job.lower()}-shoot")
    today = date.today()
    write_sample_shoot(folder, SAMPLES, size=(480, 360), today=today)
    out = tmp_path_factory.mktemp(f"{job.lower()}-out")
    summary = process_shoot(
        shoot=str(folder), job_id=job, manifest=str(folder / "manifest.csv"), output_root=str(out)
    )
    entries = wait_for_reviews(settings, job, 4)
    return summary, {e.sku: e for e in entries}, entries, today


@pytest.fixture(scope="module")
def queue_run(prefect_server, model_home, tmp_path_factory, settings):
    return _run_review_shoot(QUEUE_JOB, tmp_path_factory, settings)


def _rows(summary) -> dict[str, dict[str, str]]:
    return {row["sku"]: row for row in read_ledger(summary.ledger)}


def test_each_review_image_waits_in_its_own_suspended_run_ordered_by_deadline(queue_run):
    summary, by_sku, entries, _ = queue_run
    assert summary.lanes["review"] == 4 and summary.lanes["auto"] == 1
    assert [e.sku for e in entries] == ["OV-1", "JW-1", "GL-1", "HB-1"]
    assert len({e.run_id for e in entries}) == 4
    assert all(e.state == "Suspended" for e in entries)
    rows = _rows(summary)
    for sku, entry in by_sku.items():
        assert rows[sku]["review_run_id"] == entry.run_id
        assert rows[sku]["review_state"] == "queued"
        assert entry.run_name.endswith(f"· {sku} · {QUEUE_JOB}")
        assert entry.ui_url.endswith(f"/runs/flow-run/{entry.run_id}")
    assert [r["sku"] for r in summary.reviews] == ["OV-1", "JW-1", "GL-1", "HB-1"]


def test_reviews_wait_without_starting_a_process_until_a_retoucher_answers(queue_run):
    """The shoot creates each review run already suspended, with its form: no flow-run process
    runs for it (never Pending or Running, run count 0) until someone resumes it. The story
    test resumes such runs and sees the worker process run them to the DAM."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    _, _, entries, _ = queue_run
    with get_client(sync_client=True) as client:
        for entry in entries:
            run = client.read_flow_run(UUID(entry.run_id))
            history = client.read_flow_run_states(UUID(entry.run_id))
            assert run.run_count == 0 and run.start_time is None
            assert [state.name for state in history] == ["Suspended"]
            assert run.state.state_details.pause_reschedule  # resumed, it is run afresh
            assert form_defaults(entry.run_id) == {"retouched_file": "", "note": ""}


def test_review_parameters_conform_to_the_deployments_schema(queue_run):
    """Review runs are created without the server checking their parameters (they are dumps
    of Cutline's own models, and that check was half of the server's CPU per review); this
    checks them once against the schema the server would have used."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.utilities.schema_tools import validate

    _, _, entries, _ = queue_run
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("review-cutout/review")
        assert deployment.enforce_parameter_schema  # runs started by hand are still checked
        for entry in entries:
            parameters = client.read_flow_run(UUID(entry.run_id)).parameters
            validate(parameters, deployment.parameter_openapi_schema, raise_on_error=True)


def test_form_text_gives_what_a_retoucher_needs(queue_run):
    _, by_sku, _, today = queue_run
    text = form_description(by_sku["GL-1"].run_id)
    for expected in (
        "GL-1",
        "glassware",
        "Glassware:",
        "Perfume bottle.",
        BY_SKU["GL-1"].deadline(today),
        ".psd",
        "AI mask",
        "480x360",
    ):
        assert expected in text
    assert "file://" not in text  # browsers refuse those from a web page


def test_the_form_shows_the_pictures_and_links_files_over_http(queue_run):
    import io
    import re

    _, by_sku, _, _ = queue_run
    run_id = by_sku["GL-1"].run_id
    text = form_description(run_id)
    preview = re.search(r"!\[[^\]]*\]\((http://127\.0\.0\.1:\d+/s/[\w-]{43}/preview\.jpg)\)", text)
    assert preview, text
    with urllib.request.urlopen(preview[1], timeout=10) as resp:
        assert resp.headers["Content-Type"] == "image/jpeg"
        picture = Image.open(io.BytesIO(resp.read()))
    # Four panels, two by two (each half the form's width), small enough to load at once.
    assert 600 < picture.width <= 800 and 400 < picture.height <= 900, picture.size
    assert f"[Open these pictures at full size]({preview[1]})" in text
    page = re.search(r"\[Open the review page\]\((http://\S+/index\.html)\)", text)[1]
    with urllib.request.urlopen(page, timeout=10) as resp:
        body = resp.read().decode()
    assert "GL-1" in body and "preview.jpg" in body and "layered.psd" in body
    base = page.rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{base}/source.jpg", timeout=10) as resp:
        assert resp.read()[:2] == b"\xff\xd8"  # the source JPEG itself
    with urllib.request.urlopen(f"{base}/layered.psd", timeout=10) as resp:
        assert "attachment" in resp.headers["Content-Disposition"]
        assert resp.read(4) == b"8BPS"
    # The decision has no default: a careless Submit cannot publish.
    assert "decision" not in form_defaults(run_id)


def _events(api: str, name: str) -> list[dict]:
    body = json.dumps({"filter": {"event": {"name": [name]}}, "limit": 50}).encode()
    request = urllib.request.Request(
        f"{api}/events/filter", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)["events"]


def test_review_requested_events_are_emitted(queue_run, prefect_server):
    _, by_sku, _, _ = queue_run
    wanted = {f"cutline.review.{e.run_id}" for e in by_sku.values()}

    def resources() -> list[str]:
        events = _events(prefect_server, "cutline.review.requested")
        return [e["resource"]["prefect.resource.id"] for e in events]

    # The server persists events in the background.
    wait_until(lambda: wanted <= set(resources()), "the review-requested events")
    events = _events(prefect_server, "cutline.review.requested")
    seen = [e["resource"]["prefect.resource.id"] for e in events]
    assert all(seen.count(r) == 1 for r in wanted)  # once per review, despite replays
    payload = next(
        e["payload"]
        for e in events
        if e["resource"]["prefect.resource.id"] == f"cutline.review.{by_sku['GL-1'].run_id}"
    )
    assert (
        payload["sku"] == "GL-1"
        and payload["job_id"] == QUEUE_JOB
        and "Glassware" in payload["reasons"]
    )


def test_cli_lists_the_queue_as_json(queue_run):
    result = run_cli("review", "list", "--job", QUEUE_JOB, "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [e["sku"] for e in listed][:1] == ["OV-1"]
    assert {"run_id", "sku", "category", "reasons", "age_hours", "ui_url", "deadline"} <= set(
        listed[0]
    )
    table = run_cli("review", "list", "--job", QUEUE_JOB)
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:4] == ["DEADLINE", "SKU", "CATEGORY", "JOB"] and "RUN" in header
    dam = run_cli("dam", "list", "--job", QUEUE_JOB)
    assert dam.returncode == 0, dam.stderr
    header, *rows = dam.stdout.splitlines()
    assert header.split()[:4] == ["DAM", "ID", "SKU", "STATE"]
    assert "LANE: DECIDED BY" in header and "SIGNED OFF BY" in header
    assert any("auto-approved  auto: cutline-auto" in row for row in rows), rows


def test_overdue_review_is_escalated_once_not_dropped(queue_run, prefect_server):
    from cutline.base.settings import CutlineSettings, get_settings
    from cutline.services.housekeeping import start_housekeeping
    from cutline.services.review_queue import list_reviews
    from flows.escalate_reviews import escalate_reviews

    _, by_sku, _, _ = queue_run
    # The stack's housekeeping (a thread of its worker process, no flow runs) escalates it; a
    # round every 0.3 s here instead of every 5 minutes.
    stop = start_housekeeping(
        get_settings().model_copy(update={"housekeeping_minutes": 0.005}), "http://ui"
    )
    try:

        def escalated():
            queue = {e.sku: e for e in list_reviews(get_settings(), "http://ui", QUEUE_JOB)}
            return queue if queue["OV-1"].escalated else None

        queue = wait_until(escalated, "housekeeping to escalate OV-1", timeout=60)
    finally:
        stop.set()
    assert queue["OV-1"].escalated and queue["OV-1"].overdue
    assert queue["OV-1"].state == "Suspended"  # escalated reviews stay in the queue
    for sku in ("GL-1", "JW-1", "HB-1"):  # due in a few days: not overdue, not escalated
        assert not queue[sku].overdue and not queue[sku].escalated, sku
    assert by_sku["OV-1"].run_id not in escalate_reviews()  # announced once
    # By age too: with a tiny waiting limit every waiting review is overdue.
    impatient = CutlineSettings(review_escalate_after_hours=0.0001)
    assert all(
        e.overdue for e in list_reviews(impatient, "http://ui", QUEUE_JOB) if e.state == "Suspended"
    )
    wanted = f"cutline.review.{by_sku['OV-1'].run_id}"

    def announced() -> list[dict]:
        return [
            e
            for e in _events(prefect_server, "cutline.review.escalated")
            if e["resource"]["prefect.resource.id"] == wanted
        ]

    wait_until(announced, "the cutline.review.escalated event")
    assert len(announced()) == 1


# The retoucher's story: each step builds on the ones before it, so they run as one test.


def _step_approve_lands_the_asset_with_all_renditions(summary, by_sku, settings, tmp_path):
    run = decide(by_sku["GL-1"].run_id, ui_form("approve", note="glass is clean"))
    assert run.state.is_completed(), run.state
    row = _rows(summary)["GL-1"]
    assert (
        row["lane"] == "review"
        and row["review_state"] == "approved"
        and row["reviewed_by"] == "Ana Retoucher"
    )
    record = LocalCatalog(settings.resolved_catalog_dir).get(row["dam_id"])
    assert record.approval_state == ApprovalState.APPROVED and record.approved_by == "Ana Retoucher"
    assert {"png", "psd", "mask", "jpg:web"} <= set(record.renditions)
    assert Image.open(row["png"]).mode == "RGBA"
    assert np.array_equal(
        np.asarray(Image.open(row["png"]).getchannel("A")), np.asarray(Image.open(row["mask"]))
    )


def _step_invalid_replace_asks_again_then_replace_uses_the_retouched_mask(
    summary, by_sku, settings, tmp_path
):
    import re

    from prefect.input import read_flow_run_input

    from tasks.review_request import REVIEW_PAGE_KEY

    run_id = by_sku["JW-1"].run_id
    page = re.search(r"\[Open the review page\]\((http://\S+)\)", form_description(run_id))[1]
    # From the terminal: the refusal is printed with its reason, not "see its form text".
    missing = str(tmp_path / "missing.png")
    command = ["review", "resume", run_id, "--replace", missing, "--by", "Ana Retoucher"]
    cli = run_cli(*command)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "the answer was not accepted" in cli.stderr and "does not exist" in cli.stderr, (
        cli.stderr
    )
    run = read_run(run_id)
    assert run.state.is_paused(), "a bad answer must ask again, not fail the run"
    assert "does not exist" in form_description(run_id)
    # Asked again, the form links the page the shoot published (kept in the first form's
    # schema): the resumed run did not make a page and a request of its own.
    assert page in form_description(run_id)
    assert read_flow_run_input(REVIEW_PAGE_KEY, flow_run_id=run_id) is None
    truncated = tmp_path / "truncated.png"
    good = tmp_path / "full.png"
    Image.new("LA", (480, 360), (0, 255)).save(good)
    truncated.write_bytes(good.read_bytes()[:200])
    run = decide(run_id, ui_form("replace", retouched_file=str(truncated)))
    assert run.state.is_paused() and "damaged or incomplete" in form_description(run_id)
    wrong_size = tmp_path / "small.png"
    Image.new("RGBA", (10, 10)).save(wrong_size)
    run = decide(run_id, ui_form("replace", retouched_file=str(wrong_size)))
    assert run.state.is_paused() and "10x10 but the source is 480x360" in form_description(run_id)

    retouched = np.zeros((360, 480), dtype=np.uint8)
    retouched[:, :240] = 255  # clearly not the AI's mask: the left half only
    path = tmp_path / "retouched.png"
    rgba = Image.new("RGBA", (480, 360), (10, 20, 30, 0))
    rgba.putalpha(Image.fromarray(retouched))
    rgba.save(path)
    run = decide(run_id, ui_form("replace", retouched_file=str(path), note="fixed the clasp"))
    assert run.state.is_completed(), run.state
    row = _rows(summary)["JW-1"]
    assert row["review_state"] == "replaced"
    assert np.array_equal(np.asarray(Image.open(row["png"]).getchannel("A")), retouched)
    record = LocalCatalog(settings.resolved_catalog_dir).get(row["dam_id"])
    # Provenance: the DAM says replaced, by whom, from which retouched file.
    assert record.approval_state == ApprovalState.REPLACED and record.note == "fixed the clasp"
    assert record.decided_by == "Ana Retoucher"
    assert record.metadata["retouched_file"] == str(path)
    assert record.metadata["decision"] == "replace"


def _step_reject_marks_the_asset_rejected_with_the_note(summary, by_sku, settings, tmp_path):
    run = decide(by_sku["HB-1"].run_id, ui_form("reject", note=" "))
    assert run.state.is_paused(), "a reject without a note tells the photographer nothing"
    assert "a reject needs a note" in form_description(by_sku["HB-1"].run_id)
    run = decide(by_sku["HB-1"].run_id, ui_form("reject", note="flyaways everywhere, reshoot"))
    assert run.state.is_completed(), run.state
    row = _rows(summary)["HB-1"]
    assert row["review_state"] == "rejected" and row["png"] == ""
    record = LocalCatalog(settings.resolved_catalog_dir).get(row["dam_id"])
    assert record.approval_state == ApprovalState.REJECTED
    assert record.note == "flyaways everywhere, reshoot"


def _step_missing_name_asks_again(summary, by_sku, settings, tmp_path):
    run = decide(by_sku["OV-1"].run_id, ui_form("approve", retoucher=" ", note="looks fine"))
    assert run.state.is_paused()
    assert "enter your name" in form_description(by_sku["OV-1"].run_id)
    # Asked again, the form holds the refused answer: only the name needs correcting; the
    # fields an answer needs stay required (the UI does not call them "(Optional)").
    kept = form_defaults(by_sku["OV-1"].run_id)
    assert kept["decision"] == "approve" and kept["note"] == "looks fine"
    assert {"decision", "retoucher"} <= set(form_schema(by_sku["OV-1"].run_id)["required"])


def _review_run_count(job: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
    )

    with get_client(sync_client=True) as client:
        return len(
            client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["review-cutout"])),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job}"])),
            )
        )


def _step_nothing_is_registered_twice_and_a_rerun_keeps_decisions(
    summary, by_sku, settings, tmp_path
):
    from flows.process_shoot import process_shoot

    catalog = LocalCatalog(settings.resolved_catalog_dir)
    before = {r.sku: r.approval_state for r in catalog.list_job(STORY_JOB)}
    assert before == {
        "FW-1": ApprovalState.AUTO_APPROVED,
        "GL-1": ApprovalState.APPROVED,
        "JW-1": ApprovalState.REPLACED,
        "HB-1": ApprovalState.REJECTED,
    }
    shoot = str(Path(read_ledger(summary.ledger)[0]["source"]).parent)
    again = process_shoot(
        shoot=shoot,
        job_id=STORY_JOB,
        manifest=str(Path(shoot) / "manifest.csv"),
        output_root=str(Path(summary.ledger).parent.parent),
    )
    assert {r.sku: r.approval_state for r in catalog.list_job(STORY_JOB)} == before
    rows = _rows(again)
    assert rows["GL-1"]["review_state"] == "approved" and rows["HB-1"]["review_state"] == "rejected"
    # The same waiting review is reused, not a second run for the same image.
    assert rows["OV-1"]["review_run_id"] == by_sku["OV-1"].run_id
    assert _review_run_count(STORY_JOB) == 4


def _step_a_waiting_review_survives_a_stack_restart(summary, by_sku, settings, tmp_path):
    stopped = stack.down(settings)
    assert set(stopped) == {"worker", "server"}
    assert not stack.status(settings).healthy
    stack.up(settings)
    assert read_run(by_sku["OV-1"].run_id).state.is_paused(), (
        "the review must still wait after a restart"
    )
    run = decide(by_sku["OV-1"].run_id, ui_form("approve", retoucher="Bo"))
    assert run.state.is_completed(), run.state
    row = _rows(summary)["OV-1"]
    assert row["review_state"] == "approved" and row["reviewed_by"] == "Bo"


STORY_STEPS = (
    _step_approve_lands_the_asset_with_all_renditions,
    _step_invalid_replace_asks_again_then_replace_uses_the_retouched_mask,
    _step_reject_marks_the_asset_rejected_with_the_note,
    _step_missing_name_asks_again,
    _step_nothing_is_registered_twice_and_a_rerun_keeps_decisions,
    _step_a_waiting_review_survives_a_stack_restart,
)


def test_retoucher_decisions_land_once_and_survive_a_rerun_and_a_restart(
    prefect_server, model_home, tmp_path_factory, settings, tmp_path
):
    summary, by_sku, _, _ = _run_review_shoot(STORY_JOB, tmp_path_factory, settings)
    run_steps(STORY_STEPS, summary, by_sku, settings, tmp_path)


def test_a_review_listed_while_still_starting_can_be_resumed_at_once(
    prefect_server, model_home, settings, tmp_path
):
    """`cutline review list` right after `cutline run` returns shows reviews whose runs are
    still being started; resuming one waits for it to be ready instead of failing with
    "Cannot resume a run that isn't paused"."""
    from cutline.services.review_queue import list_reviews
    from flows.process_shoot import process_shoot

    job = "REV-EARLY"
    write_sample_shoot(tmp_path / "shoot", SAMPLES[:1], size=(320, 240), today=date.today())
    process_shoot(shoot=str(tmp_path / "shoot"), job_id=job, output_root=str(tmp_path / "out"))
    (entry,) = wait_until(
        lambda: list_reviews(settings, settings.ui_url, job), "the review to be listed", 60, 0.05
    )
    command = ["review", "resume", entry.run_id, "--approve", "--by", "Early Bird"]
    result = run_cli(*command)
    assert result.returncode == 0, f"listed as {entry.state}: {result.stdout}{result.stderr}"
    assert read_run(entry.run_id).state.is_completed()
    (record,) = LocalCatalog(settings.resolved_catalog_dir).list_job(job)
    assert record.approval_state == ApprovalState.APPROVED and record.decided_by == "Early Bird"


def test_a_rerun_with_a_corrected_manifest_refreshes_the_waiting_review(
    prefect_server, model_home, settings, tmp_path
):
    """The form of a still-waiting review always matches the ledger: a rerun that changed its
    brief and deadline replaces the waiting run with one that shows them; the old form is
    cancelled saying why, so nobody answers it."""
    from dataclasses import replace

    from cutline.services.review_queue import list_reviews
    from flows.process_shoot import process_shoot

    job, today = "REV-FRESH", date.today()
    shoot, out = tmp_path / "shoot", tmp_path / "out"
    first = BY_SKU["GL-1"]
    write_sample_shoot(shoot, (first,), size=(320, 240), today=today)
    process_shoot(shoot=str(shoot), job_id=job, output_root=str(out))
    (old,) = wait_for_reviews(settings, job, 1)
    assert "Perfume bottle." in form_description(old.run_id)

    corrected = replace(first, brief="Perfume bottle: keep the cap's engraving.", due_in_days=2)
    write_sample_shoot(shoot, (corrected,), size=(320, 240), today=today)  # same pixels
    process_shoot(shoot=str(shoot), job_id=job, output_root=str(out))

    def replaced():
        waiting = [
            e for e in list_reviews(settings, settings.ui_url, job) if e.state == "Suspended"
        ]
        return waiting if waiting and waiting[0].run_id != old.run_id else None

    (new,) = wait_until(replaced, "the refreshed review to wait", timeout=120)
    text = form_description(new.run_id)
    assert "keep the cap's engraving" in text and corrected.deadline(today) in text
    assert new.deadline.startswith(corrected.deadline(today)[:10])
    gone = read_run(old.run_id).state
    assert gone.is_cancelled() and "Superseded" in gone.message and "brief" in gone.message
    (row,) = read_ledger(str(out / job / "ledger.csv"))
    assert row["review_run_id"] == new.run_id

    # A third run with nothing changed keeps that review as it is.
    process_shoot(shoot=str(shoot), job_id=job, output_root=str(out))
    (again,) = read_ledger(str(out / job / "ledger.csv"))
    assert again["review_run_id"] == new.run_id and read_run(new.run_id).state.is_paused()


def test_a_request_cut_short_before_its_form_is_finished_by_the_next_request(queue_run):
    """A review run created waiting whose request stopped before the form was stored (a
    crash, a lost connection) cannot be resumed; the next request for it (a rerun) finds it
    by its key and stores the form, instead of leaving it or starting a second review."""
    from prefect.client.orchestration import get_client

    from cutline.domain.items import ImageItem
    from cutline.services.review_queue import cancel_run
    from cutline.services.waiting_run import (
        WaitingRunRequest,
        create_waiting_run,
        form_missing,
        store_form,
        waiting_keyset,
    )
    from tasks.context import ShootContext
    from tasks.review import decision_form, decision_key, review_run_name
    from tasks.review_request import open_review, review_deployment_id

    _, by_sku, _, _ = queue_run
    shown = read_run(by_sku["GL-1"].run_id).parameters
    item = ImageItem.model_validate(shown["item"])
    ctx = ShootContext.model_validate(shown["ctx"]).model_copy(update={"job_id": "REV-REPAIR"})
    key = f"review:{ctx.job_id}:cut-short"
    with get_client(sync_client=True) as client:
        deployment = review_deployment_id(client, ctx)
        cut_short = create_waiting_run(
            client,
            deployment,
            WaitingRunRequest(
                pause_key=decision_key(0),
                parameters={"item": shown["item"], "ctx": ctx.model_dump(mode="json")},
                name=review_run_name(item, ctx.job_id),
                tags=["cutline-review", f"job:{ctx.job_id}"],
                idempotency_key=key,
            ),
        ).run
        assert form_missing(client, cut_short)
        again = open_review(client, deployment, item, ctx, key)
        assert again.id == cut_short.id and not form_missing(client, again)
        # Two requests finishing the same run at once: the second leaves the form as it is.
        form = decision_form(item, ctx, {})
        store_form(client, again.id, waiting_keyset(decision_key(0)), form)
    try:
        assert "GL-1" in form_description(str(again.id))
        assert form_defaults(str(again.id)) == {"retouched_file": "", "note": ""}
    finally:
        cancel_run(str(again.id), "test over")


def test_runs_the_server_will_not_create_together_are_left_to_be_made_one_by_one(queue_run):
    """A bulk request the server answers 404 (a Prefect server without the bulk endpoint, or
    no such deployment) creates nothing and hands every run back to the one-by-one path."""
    import uuid

    from prefect.client.orchestration import get_client

    from cutline.domain.items import ImageItem
    from cutline.services.waiting_run import create_waiting_runs
    from tasks.context import ShootContext
    from tasks.review_request import review_run_request

    _, by_sku, _, _ = queue_run
    shown = read_run(by_sku["GL-1"].run_id).parameters
    item = ImageItem.model_validate(shown["item"])
    ctx = ShootContext.model_validate(shown["ctx"])
    requests = [review_run_request(item, ctx, f"review:none:{n}") for n in range(3)]
    with get_client(sync_client=True) as client:
        assert create_waiting_runs(client, uuid.uuid4(), requests) == [None, None, None]


def test_a_review_started_by_hand_from_the_deployment_makes_its_own_request(
    queue_run, prefect_server
):
    """Ops can start a review run from the deployment (the UI's Custom run) instead of a
    shoot: the run publishes its page, emits its request and suspends with the same form."""
    from prefect.deployments import run_deployment
    from prefect.input import read_flow_run_input

    from cutline.services.review_queue import cancel_run
    from tasks.context import ShootContext
    from tasks.review_request import REVIEW_PAGE_KEY

    _, by_sku, _, _ = queue_run
    shown = read_run(by_sku["GL-1"].run_id).parameters
    ctx = ShootContext.model_validate(shown["ctx"]).model_copy(update={"job_id": "REV-HAND"})
    run = run_deployment(
        ctx.config.review_deployment,
        parameters={"item": shown["item"], "ctx": ctx.model_dump(mode="json")},
        timeout=0,
    )
    run_id = str(run.id)
    try:
        wait_until(lambda: read_run(run_id).state.is_paused(), "the run to suspend", timeout=180)
        text = form_description(run_id)
        assert "GL-1" in text and "[Open the review page](http" in text
        assert form_defaults(run_id) == {"retouched_file": "", "note": ""}
        links = read_flow_run_input(REVIEW_PAGE_KEY, flow_run_id=run.id)
        assert links and links["page"] in text  # the run's own request, remembered
        wanted = f"cutline.review.{run_id}"
        wait_until(
            lambda: any(
                e["resource"]["prefect.resource.id"] == wanted
                for e in _events(prefect_server, "cutline.review.requested")
            ),
            "the hand-started review's requested event",
        )
    finally:
        cancel_run(run_id, "test over")


# Hostile answers: each test decides its own review of one shoot, so any one runs alone.

HOSTILE_JOB = "REV-HOSTILE"
HOSTILE_SAMPLES = tuple(
    Sample(f"{sku}_front.jpg", sku, "glassware", "tall", colour, "web", 4, "Perfume bottle.")
    for sku, colour in (
        ("GA-1", (150, 170, 190)),
        ("GB-1", (170, 150, 190)),
        ("GC-1", (150, 190, 170)),
    )
)


@pytest.fixture(scope="module")
def hostile_run(prefect_server, model_home, tmp_path_factory, settings):
    """A shoot of three glassware images (always reviewed), all three waiting."""
    from flows.process_shoot import process_shoot

    folder = tmp_path_factory.mktemp("rev-hostile-shoot")
    write_sample_shoot(folder, HOSTILE_SAMPLES, size=(320, 240), today=date.today())
    out = tmp_path_factory.mktemp("rev-hostile-out")
    summary = process_shoot(
        shoot=str(folder),
        job_id=HOSTILE_JOB,
        manifest=str(folder / "manifest.csv"),
        output_root=str(out),
    )
    entries = wait_for_reviews(settings, HOSTILE_JOB, 3)
    return summary, {e.sku: e for e in entries}


def test_two_retouchers_answering_at_once_the_first_wins_and_the_other_is_told(
    hostile_run, settings
):
    """Approve and reject sent to one review at the same moment (through the Prefect API, as
    two browsers would): exactly one lands, the other is told that its answer was not used
    and which was; the run's final state says what was decided. A retoucher answering from
    the terminal after someone else already did is told the same, with what landed."""
    import contextvars
    import threading

    from cutline.services.review_queue import AnswerNotUsed, resume_review, wait_for_outcome

    summary, by_sku = hostile_run
    run_id = by_sku["GA-1"].run_id
    answers = {
        "approve": ui_form("approve", retoucher="Ana Retoucher"),
        "reject": ui_form("reject", retoucher="Bo Retoucher", note="smudge on the glass"),
    }
    start, results = threading.Barrier(2), {}

    def answer(kind: str) -> None:
        start.wait()
        try:
            resume_review(run_id, answers[kind])
            results[kind] = None
        except Exception as exc:
            results[kind] = exc

    threads = [  # each with this test's Prefect settings (context variables)
        threading.Thread(target=contextvars.copy_context().run, args=(answer, kind))
        for kind in answers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    winners = [kind for kind, error in results.items() if error is None]
    assert len(winners) == 1, results
    (winner,) = winners
    (loser,) = set(answers) - {winner}
    lost = results[loser]
    assert isinstance(lost, AnswerNotUsed), repr(lost)
    assert lost.used == answers[winner]
    assert "your answer was not used" in str(lost) and f"{winner} by" in str(lost)
    run = wait_for_outcome(run_id)
    assert run.state.is_completed(), run.state
    who = answers[winner]["retoucher"]
    assert f"Decided: {winner} by {who}" in run.state.message  # what the UI shows on the run
    row = _rows(summary)["GA-1"]
    assert row["review_state"] == {"approve": "approved", "reject": "rejected"}[winner]
    record = LocalCatalog(settings.resolved_catalog_dir).get(row["dam_id"])
    assert record.decided_by == who
    assert [h["state"] for h in record.history] == [record.approval_state.value]  # one landed

    # From the terminal, after another retoucher's answer was taken: told, never "landed".
    late_id = by_sku["GB-1"].run_id
    resume_review(late_id, ui_form("approve", retoucher="Ana Retoucher"))
    command = ["review", "resume", late_id, "--reject", "--by", "Bo Retoucher", "--note", "late"]
    cli = run_cli(*command)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "landed" not in cli.stdout, cli.stdout
    assert "your answer was not used: approve by Ana Retoucher" in cli.stderr, cli.stderr
    assert "decided instead: approve by Ana Retoucher" in cli.stderr, cli.stderr
    row = _rows(summary)["GB-1"]
    assert row["review_state"] == "approved" and row["reviewed_by"] == "Ana Retoucher"


def _land_task_state(run_id: str) -> str:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
        )
    names = [r.state.name for r in runs if r.name.startswith("land-review-decision") and r.state]
    return names[0] if names else ""


def test_a_retouched_file_lands_as_it_was_checked_and_empty_or_lying_files_are_refused(
    hostile_run, settings, tmp_path
):
    """A fully transparent export and a PSD whose saved composite is not its layers are
    refused through the form, saying why. A good file is checked, then its landing fails once
    and, before the retry, the file is overwritten with the photo itself (RGB, no alpha): the
    retry publishes the mask that was checked, never the photo's luminance."""
    import hashlib
    import shutil

    from prefect.input import read_flow_run_input

    from cutline.services.review_queue import resume_review, wait_for_outcome
    from tests.reviews import layered_psd, retouched_png

    summary, by_sku = hostile_run
    run_id = by_sku["GC-1"].run_id
    clear = retouched_png(tmp_path / "clear.png", np.zeros((240, 320)))
    run = decide(run_id, ui_form("replace", retouched_file=clear))
    assert run.state.is_paused() and "fully transparent" in form_description(run_id)
    left = np.zeros((240, 320), dtype=np.uint8)
    left[:, :160] = 255
    lying = layered_psd(tmp_path / "lying.psd", left, 255 - left)
    run = decide(run_id, ui_form("replace", retouched_file=lying))
    text = form_description(run_id)
    assert run.state.is_paused() and "another picture than its layers show" in text, text
    assert "Maximize PSD compatibility" in text

    good = retouched_png(tmp_path / "retouched.png", left)
    checked = hashlib.sha256(Path(good).read_bytes()).hexdigest()
    row = _rows(summary)["GC-1"]
    blocker = Path(summary.ledger).parent / "png" / f"{row['image_id']}.png"
    blocker.mkdir(parents=True)  # the PNG cannot be written: the first landing fails
    (blocker / "keep").write_text("x")
    resume_review(run_id, ui_form("replace", retouched_file=good, note="clean edge"))
    wait_until(
        lambda: read_flow_run_input("verdict-2", flow_run_id=run_id) is not None,
        "the answer to be checked",
        120,
        0.05,
    )
    # Checked: now the file changes (the photo itself, RGB without alpha) before it lands.
    Image.open(row["source"]).convert("RGB").save(good, format="PNG")
    wait_until(
        lambda: _land_task_state(run_id) in {"AwaitingRetry", "Retrying"},
        "the landing to fail once",
        120,
        0.05,
    )
    shutil.rmtree(blocker)  # the retry (5 s, then 30 s later) can write
    run = wait_for_outcome(run_id, timeout=180)
    assert run.state.is_completed(), run.state
    row = _rows(summary)["GC-1"]
    assert row["review_state"] == "replaced"
    assert np.array_equal(np.asarray(Image.open(row["png"]).getchannel("A")), left)
    record = LocalCatalog(settings.resolved_catalog_dir).get(row["dam_id"])
    assert record.metadata["retouched_file"] == good
    assert record.metadata["retouched_sha256"] == checked  # the bytes checked, not the photo
