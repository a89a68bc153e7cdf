"""review-cutout: one suspended flow run per doubtful image, resumed by a retoucher's form."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.flow_runs import suspend_flow_run
from prefect.input import create_flow_run_input, read_flow_run_input
from prefect.runtime import flow_run

from cutline.items import ImageItem
from tasks.context import ShootContext
from tasks.review import (
    ReviewDecision,
    ReviewOutcome,
    emit_review_event,
    land_decision,
    review_description,
    validate_decision,
)


def _once(key: str) -> bool:
    """True the first time ``key`` is seen in this run: suspended runs replay from the top."""
    if read_flow_run_input(key) is not None:
        return False
    create_flow_run_input(key, True)
    return True


def _verdict(attempt: int, decision: ReviewDecision, item: ImageItem) -> str:
    """Validate an answer once and remember the verdict, so a replay judges it the same way."""
    key = f"verdict-{attempt}"
    stored = read_flow_run_input(key)
    if stored is not None:
        return stored
    problem = validate_decision(decision, item)
    create_flow_run_input(key, problem)
    return problem


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
    if _once("requested-event"):
        emit_review_event("requested", item, ctx, run_id)
    problem = ""
    attempt = 0
    while True:
        form = ReviewDecision.with_initial_data(
            description=review_description(item, ctx, problem), decision="approve"
        )
        decision = suspend_flow_run(wait_for_input=form, key=f"decision-{attempt}", timeout=None)
        problem = _verdict(attempt, decision, item)
        if not problem:
            break
        logger.warning("Review answer for %s rejected: %s", item.sku, problem)
        attempt += 1
    outcome = land_decision(decision, item, ctx)
    emit_review_event("decided", item, ctx, run_id, decision=outcome.decision, by=outcome.retoucher)
    logger.info("%s %s by %s -> %s", item.sku, outcome.decision, outcome.retoucher, outcome.dam_id)
    return outcome
