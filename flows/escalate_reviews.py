"""escalate-reviews: reviews that waited too long are tagged and announced, never dropped."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.events import emit_event
from prefect.settings import PREFECT_UI_URL

from cutline.base.settings import get_settings
from cutline.services.review_queue import list_reviews, mark_escalated
from cutline.services.stranded_runs import recover_stranded_runs


@flow(name="escalate-reviews")
def escalate_reviews() -> list[str]:
    """Tag every overdue waiting review 'escalated' and emit cutline.review.escalated once;
    recover runs whose process died (see cutline.services.stranded_runs)."""
    logger = get_run_logger()
    settings = get_settings()
    for run in recover_stranded_runs(settings.stranded_after_seconds):
        logger.warning("%s %s run %s: its process had stopped", run.action, run.flow, run.name)
    escalated = []
    ui_url = PREFECT_UI_URL.value() or settings.ui_url  # the UI of the API this run reports to
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
