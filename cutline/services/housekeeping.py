"""The stack's periodic chores, run inside its worker process rather than as scheduled flow
runs: a 5-minute schedule made 288 `escalate-reviews` runs a day that buried the shoots in
the UI's Runs list while almost all of them did nothing. Here the chores cost no flow run;
what they do is still visible where it matters (the escalated tag and event on the review,
the recovered run's own state message, the serve log)."""

from __future__ import annotations

import contextvars
import logging
import threading
import time

from prefect.events import emit_event

from cutline.base.settings import CutlineSettings
from cutline.services.review_links import renew_review_links
from cutline.services.review_queue import list_reviews, mark_escalated
from cutline.services.schedule_parameters import repair_schedules
from cutline.services.stranded_runs import recover_stranded_runs

logger = logging.getLogger("cutline.housekeeping")


def escalate_overdue_reviews(settings: CutlineSettings, ui_url: str) -> list[str]:
    """Tag every overdue waiting review 'escalated' and emit cutline.review.escalated, once
    per review; the ids escalated now."""
    escalated = []
    for entry in list_reviews(settings, ui_url):
        if entry.state != "Suspended" or not entry.overdue or entry.escalated:
            continue
        if not mark_escalated(entry.run_id):
            continue
        emit_event(
            event="cutline.review.escalated",
            resource={
                "prefect.resource.id": f"cutline.review.{entry.run_id}",
                "prefect.resource.name": entry.run_name,
            },
            related=[
                {
                    "prefect.resource.id": f"prefect.flow-run.{entry.run_id}",
                    "prefect.resource.role": "flow-run",
                }
            ],
            payload=entry.model_dump(mode="json"),
        )
        logger.warning(
            "Escalated review %s (waiting %.1f h, deadline %s)",
            entry.run_name,
            entry.age_hours,
            entry.deadline or "-",
        )
        escalated.append(entry.run_id)
    return escalated


def tidy_once(settings: CutlineSettings, ui_url: str) -> None:
    """One round: recover runs whose process died, escalate overdue reviews, renew the links
    of reviews waiting in bucket jobs, hydrate the UI's schedule parameters; each chore runs even when another fails (its error is logged)."""
    try:
        for run in recover_stranded_runs(settings.stranded_after_seconds):
            logger.warning("%s %s run %s: its process had stopped", run.action, run.flow, run.name)
    except Exception:
        logger.exception("Recovering stranded runs failed; trying again next round")
    try:
        escalate_overdue_reviews(settings, ui_url)
    except Exception:
        logger.exception("Escalating overdue reviews failed; trying again next round")
    try:
        renew_review_links(settings, ui_url)  # presigned links of bucket jobs' reviews
    except Exception:
        logger.exception("Renewing review links failed; trying again next round")
    try:
        repair_schedules()  # a schedule made against Prefect's own server, not the stack's
    except Exception:
        logger.exception("Checking the schedules' parameters failed; trying again next round")


def start_housekeeping(settings: CutlineSettings, ui_url: str) -> threading.Event:
    """Run ``tidy_once`` every CUTLINE_HOUSEKEEPING_MINUTES in a background thread; set the
    returned event to stop it. A failed round is logged and the next one runs as planned."""
    stop = threading.Event()

    interval = settings.housekeeping_minutes * 60

    def loop() -> None:
        # Sleep in short steps rather than Event.wait(timeout): a timed wait on a condition
        # variable can hang under libfaketime, which the calendar tests run with.
        while True:
            due = time.monotonic() + interval
            while time.monotonic() < due:
                if stop.is_set():
                    return
                time.sleep(min(1.0, interval))
            tidy_once(settings, ui_url)  # logs its own failures; the next round runs anyway

    # The thread sees the caller's Prefect settings (which API) as the caller does.
    context = contextvars.copy_context()
    threading.Thread(
        target=context.run, args=(loop,), daemon=True, name="cutline-housekeeping"
    ).start()
    return stop
