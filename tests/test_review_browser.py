"""The Resume form in the real Prefect UI, driven by headless Chromium."""

from __future__ import annotations

from datetime import date

import pytest

from cutline.imaging.samples import Sample, write_sample_shoot
from cutline.records.ledger import read_ledger
from cutline.services.review_queue import read_run
from dam_adapters import ApprovalState
from dam_adapters.local_catalog import LocalCatalog
from tests.reviews import wait_for_reviews
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

JOB = "UI-0001"


def choose_decision(page, dialog, value: str) -> None:
    """Pick a value of the Decision field: prefect-design's select opens from the keyboard
    (a synthetic click toggles it open and shut) and lists role=option entries."""
    control = dialog.locator(".p-select button.p-select-button__control").first
    control.focus()
    page.keyboard.press("Space")
    page.get_by_role("option", name=value, exact=True).click()
    wait_until(
        lambda: value in control.inner_text(), f"the Decision field to show {value!r}", timeout=15
    )


def test_retoucher_decides_from_the_resume_form_in_the_prefect_ui(
    prefect_server, model_home, settings, tmp_path, artifacts_dir, browser_page
):
    from flows.process_shoot import process_shoot

    sample = Sample(
        "GL-9_front.jpg",
        "GL-9",
        "glassware",
        "tall",
        (150, 170, 190),
        "web",
        4,
        "Decanter: keep the stopper.",
    )
    today = date.today()
    write_sample_shoot(tmp_path / "shoot", (sample,), size=(400, 300), today=today)
    summary = process_shoot(
        shoot=str(tmp_path / "shoot"),
        job_id=JOB,
        manifest=str(tmp_path / "shoot" / "manifest.csv"),
        output_root=str(tmp_path / "out"),
    )
    (entry,) = wait_for_reviews(settings, JOB, 1)

    page = browser_page
    page.goto(entry.ui_url)
    page.get_by_role("button", name="Resume").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Review GL-9").wait_for(timeout=30_000)
    text = dialog.inner_text()
    for expected in (
        "Decision",
        "Retouched File",
        "Retoucher",
        "Glassware:",
        "Decanter: keep the stopper.",
        sample.deadline(today),
        "PSD with the AI mask",
    ):
        assert expected in text, expected
    # The pictures load inside the form (served over HTTP by the stack's share server).
    preview = dialog.locator("img[src*='/preview.jpg']")
    preview.first.wait_for(timeout=30_000)
    wait_until(
        lambda: preview.first.evaluate("img => img.complete && img.naturalWidth > 0"),
        "the preview picture to load in the form",
        timeout=30,
    )
    # animations="disabled" finishes the dialog's fade-in before the picture is taken.
    page.screenshot(
        path=str(artifacts_dir / "review-resume-form.png"), full_page=True, animations="disabled"
    )

    # One click opens the review page with the pictures and the files.
    with page.context.expect_page() as opened:
        dialog.get_by_role("link", name="Open the review page").click()
    review_page = opened.value
    review_page.wait_for_load_state()
    assert "layered.psd" in review_page.content()
    assert review_page.locator("img").evaluate("img => img.naturalWidth > 0")
    review_page.screenshot(path=str(artifacts_dir / "review-page.png"), full_page=True)
    review_page.close()

    boxes = dialog.get_by_role("textbox")
    boxes.nth(1).fill("Cam in the browser")
    # No decision chosen: the form refuses to submit, and nothing is published.
    dialog.get_by_role("button", name="Submit").click()
    page.screenshot(
        path=str(artifacts_dir / "review-no-decision.png"), full_page=True, animations="disabled"
    )
    # The form says why it refused: the UI checked the schema and sent nothing.
    dialog.get_by_text("'decision' is a required property").wait_for(timeout=30_000)
    assert read_run(entry.run_id).state.is_paused()
    assert dialog.is_visible()
    from cutline.services.review_queue import wait_for_outcome

    dialog.get_by_role("textbox").nth(2).fill("approved from the UI")
    choose_decision(page, dialog, "approve")
    _submit(page, dialog, entry.run_id, artifacts_dir, "review-submitted.png")

    run = wait_for_outcome(entry.run_id, timeout=180)
    assert run.state.is_completed(), run.state
    row = next(r for r in read_ledger(summary.ledger) if r["sku"] == "GL-9")
    assert row["review_state"] == "approved" and row["reviewed_by"] == "Cam in the browser"
    record = LocalCatalog(settings.resolved_catalog_dir).get(row["dam_id"])
    assert record.approval_state == ApprovalState.APPROVED and record.note == "approved from the UI"


def _submit(page, dialog, run_id: str, artifacts_dir, picture: str) -> None:
    """Submit the Resume form and wait for the dialog to close (the answer sent)."""
    dialog.get_by_role("button", name="Submit").click()
    try:  # an accepted form closes the dialog; a refused one stays open saying why
        # The server retries a browser's request for up to 60 s while SQLite is busy.
        dialog.wait_for(state="hidden", timeout=90_000)
    except Exception as exc:  # say what the page showed: a refusal, a toast, an error
        raise AssertionError(
            f"the Resume dialog stayed open; run state {read_run(run_id).state!r}; "
            f"page text: {page.locator('body').inner_text()[-3000:]}"
        ) from exc
    finally:
        page.screenshot(path=str(artifacts_dir / picture), full_page=True, animations="disabled")
