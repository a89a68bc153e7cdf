"""escalate-reviews: reviews that waited too long are tagged and announced, never dropped.

The stack does this every few minutes inside its worker process (cutline.services.housekeeping),
without a flow run each time; this flow is the same chore on demand, from the UI's Run
button or `cutline review escalate`."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.settings import PREFECT_UI_URL

from cutline.base.settings import get_settings
from cutline.services.housekeeping import escalate_overdue_reviews
from cutline.services.review_links import renew_review_links
from cutline.services.schedule_parameters import repair_schedules
from cutline.services.stranded_runs import recover_stranded_runs


@flow(name="escalate-reviews")
def escalate_reviews() -> list[str]:
    """Tag every overdue waiting review 'escalated' and emit cutline.review.escalated once;
    recover runs whose process died (see cutline.services.stranded_runs); give schedules made
    in the UI the parameters ops typed (see cutline.services.schedule_parameters); renew the
    links of reviews waiting in a bucket job (see cutline.services.review_links)."""
    logger = get_run_logger()
    settings = get_settings()
    for run in recover_stranded_runs(settings.stranded_after_seconds):
        logger.warning("%s %s run %s: its process had stopped", run.action, run.flow, run.name)
    for mended in repair_schedules():  # the UI's JSON schedule parameters, on any server
        logger.warning("Hydrated the parameters of %s (PrefectHQ/prefect#18701)", mended)
    ui_url = PREFECT_UI_URL.value() or settings.ui_url  # the UI of the API this run reports to
    for renewed in renew_review_links(settings, ui_url):  # presigned links live 7 days at most
        logger.info("Renewed the review links of run %s", renewed)
    return escalate_overdue_reviews(settings, ui_url)
