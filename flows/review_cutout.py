"""review-cutout: one suspended flow run per doubtful image, resumed by a retoucher's form."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.flow_runs import suspend_flow_run
from prefect.runtime import flow_run
from prefect.states import Completed, State

from cutline.domain.items import ImageItem
from tasks.context import ShootContext
from tasks.review import (
    ReviewDecision,
    ReviewOutcome,
    decision_form,
    decision_key,
    emit_review_event,
    land_decision,
    landed_message,
    publish_page,
    retouched_snapshot,
    validate_decision,
)
from tasks.review_board import refresh_review_queue
from tasks.review_request import REVIEW_PAGE_KEY, stored_page_links
from tasks.run_inputs import judged_once, once, remembered
from tasks.signoff import request_signoff


@flow(name="review-cutout", persist_result=True, log_prints=True)
def review_cutout(item: ImageItem, ctx: ShootContext) -> ReviewOutcome | State:
    """Wait (suspended, holding no process) for a retoucher to approve, replace or reject
    one cutout, then land the decision in the renditions, the DAM and the ledger.

    A shoot creates this run already suspended with its form (`tasks.review_request`), so
    no process runs until the retoucher answers; the first steps below then find their work
    done. Started any other way (by hand, from the deployment), the run does them itself.

    Args:
        item: The image under review, as the shoot run recorded it (SKU, reasons, files).
        ctx: The shoot it belongs to (job ID, output folder, model, rules and presets).
    """
    ctx.check_locations()
    logger = get_run_logger()
    run_id = str(flow_run.get_id())
    links = stored_page_links()
    if links is None:  # not opened by a shoot: make its request (page, event) once, here
        links = remembered(REVIEW_PAGE_KEY, lambda: publish_page(item, ctx, run_id))
        if once("requested-event"):
            emit_review_event("requested", item, ctx, run_id)
    problem, previous = "", {}
    attempt = 0
    while True:
        # Asked again, the form holds the answer that was refused, so only the wrong field
        # needs correcting.
        form = decision_form(item, ctx, links, problem, previous)
        decision = suspend_flow_run(wait_for_input=form, key=decision_key(attempt), timeout=None)
        # A replace's file is read once, by the check, which keeps what it checked here.
        snapshot = retouched_snapshot(item, ctx, f"{run_id[:8]}-{attempt}")
        level = ctx.config.png_compress_level
        problem = judged_once(
            f"verdict-{attempt}",
            lambda: validate_decision(decision, item, snapshot, level),  # noqa: B023
        )
        if not problem:
            break
        logger.warning("Review answer for %s rejected: %s", item.sku, problem)
        previous = decision.model_dump(include=set(ReviewDecision.model_fields))
        attempt += 1
    outcome = land_decision(decision, item, ctx, snapshot)
    emit_review_event("decided", item, ctx, run_id, decision=outcome.decision, by=outcome.retoucher)
    logger.info("%s %s by %s -> %s", item.sku, outcome.decision, outcome.retoucher, outcome.dam_id)
    if why := refresh_review_queue(ctx.job_id):
        logger.warning("%s", why)
    _signoff_when_last(ctx, run_id)
    # What the UI shows on the run: whoever answered it too late (the first answer wins;
    # Prefect refuses later ones) sees what was decided instead.
    return Completed(message=landed_message(outcome), data=outcome)


def _signoff_when_last(ctx: ShootContext, run_id: str) -> None:
    """When this was the shoot's last open review, ask the producer to sign off again with
    a contact sheet that now holds every decided image."""
    from cutline.services.review_queue import another_open_review

    if another_open_review(ctx.job_id, run_id):
        return
    try:
        request_signoff(ctx.job_id, ctx.output_root, reason=f"reviews-done:{run_id}")
    except Exception as exc:  # the decision has landed; sign-off can be requested by hand
        get_run_logger().warning("Could not request sign-off for %s: %s", ctx.job_id, exc)
