"""review-cutout: one suspended flow run per doubtful image, resumed by a retoucher's form."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.flow_runs import suspend_flow_run
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL

from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.services.review_page import publish_review_page
from tasks.context import ShootContext
from tasks.review import (
    ReviewDecision,
    ReviewOutcome,
    emit_review_event,
    land_decision,
    review_description,
    validate_decision,
)
from tasks.run_inputs import judged_once, once, remembered
from tasks.signoff import request_signoff


@flow(name="review-cutout", persist_result=True, log_prints=True)
def review_cutout(item: ImageItem, ctx: ShootContext) -> ReviewOutcome:
    """Wait (suspended, holding no process) for a retoucher to approve, replace or reject
    one cutout, then land the decision in the renditions, the DAM and the ledger.

    Args:
        item: The image under review, as the shoot run recorded it (SKU, reasons, files).
        ctx: The shoot it belongs to (job ID, output folder, model, rules and presets).
    """
    ctx.check_locations()
    logger = get_run_logger()
    run_id = str(flow_run.get_id())
    if once("requested-event"):
        emit_review_event("requested", item, ctx, run_id)
    links = remembered("review-page", lambda: _review_page(item, ctx, run_id))
    problem, previous = "", {}
    attempt = 0
    while True:
        # No default decision: a careless Submit must not publish. Asked again, the form
        # holds the answer that was refused, so only the wrong field needs correcting.
        form = ReviewDecision.with_initial_data(
            description=review_description(item, ctx, problem, links), **previous
        )
        decision = suspend_flow_run(wait_for_input=form, key=f"decision-{attempt}", timeout=None)
        problem = judged_once(
            f"verdict-{attempt}",
            lambda: validate_decision(decision, item),  # noqa: B023
        )
        if not problem:
            break
        logger.warning("Review answer for %s rejected: %s", item.sku, problem)
        previous = decision.model_dump(include=set(ReviewDecision.model_fields))
        attempt += 1
    outcome = land_decision(decision, item, ctx)
    emit_review_event("decided", item, ctx, run_id, decision=outcome.decision, by=outcome.retoucher)
    logger.info("%s %s by %s -> %s", item.sku, outcome.decision, outcome.retoucher, outcome.dam_id)
    _signoff_when_last(ctx, run_id)
    return outcome


def _review_page(item: ImageItem, ctx: ShootContext, run_id: str) -> dict[str, str]:
    """Publish the review's pictures and files (once per run); a failure costs the preview,
    never the review."""
    settings = get_settings()
    ui_run = f"{PREFECT_UI_URL.value() or settings.ui_url}/runs/flow-run/{run_id}"
    try:
        return publish_review_page(
            settings,
            item,
            ctx.job_id,
            run_id,
            ui_run,
            ctx.config.max_pixels,
            roots=[ctx.shoot, ctx.job_root],  # only the review's own files, never elsewhere
        )
    except Exception as exc:
        get_run_logger().warning("No review page for %s: %s", item.sku, exc)
        return {"problem": f"{type(exc).__name__}: {exc}"[:300]}


def _signoff_when_last(ctx: ShootContext, run_id: str) -> None:
    """When this was the shoot's last open review, ask the producer to sign off again with
    a contact sheet that now holds every decided image."""
    from cutline.services.review_queue import waiting_runs

    if any(str(run.id) != run_id for run in waiting_runs(ctx.job_id)):
        return
    try:
        request_signoff(ctx.job_id, ctx.output_root, reason=f"reviews-done:{run_id}")
    except Exception as exc:  # the decision has landed; sign-off can be requested by hand
        get_run_logger().warning("Could not request sign-off for %s: %s", ctx.job_id, exc)
