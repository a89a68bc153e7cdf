"""reopen-assets: a producer sends signed-off assets back to review after client feedback.

Started from the Prefect UI (Deployments -> reopen-assets/reopen -> Run -> Custom run) or
`cutline signoff reopen JOB --sku ... --note ... --by ...`. Each named SKU's assets go back
to the review lane with the producer's note (a review run each, as a sign-off's send-back
does); when the last review is decided, the shoot asks for sign-off of what changed only.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State
from pydantic import BaseModel, Field

from cutline.base.errors import CutlineError
from cutline.base.markdown import visible_text
from cutline.base.naming import person_name_problem
from cutline.base.settings import get_settings
from cutline.domain.items import JobLayout, validate_job_id
from cutline.domain.locations import check_location
from dam_adapters import ApprovalState, AssetRecord, create_adapter
from tasks.review_board import refresh_review_queue
from tasks.signoff import SIGNABLE, job_dam_settings, send_back, shoot_context

REOPEN_DEPLOYMENT = "reopen-assets/reopen"
REOPENABLE = SIGNABLE | {ApprovalState.SIGNED_OFF}


class ReopenRefused(CutlineError):
    """The request cannot be carried out as asked; nothing was reopened."""


class ReopenOutcome(BaseModel):
    """What a reopen did."""

    job_id: str
    producer: str
    note: str
    reopened: dict[str, str] = Field(description="Asset (SKU and file) -> its new review run.")


def reopenable(records: list[AssetRecord], skus: list[str]) -> list[AssetRecord]:
    """The assets of ``skus`` a producer can send back now (signed off, or published and
    not yet signed off); ReopenRefused naming the SKUs that have none, and why."""
    problems = []
    chosen = []
    for sku in skus:
        mine = [r for r in records if r.sku == sku]
        live = [r for r in mine if r.approval_state in REOPENABLE]
        if not mine:
            problems.append(f"{sku}: no asset of this SKU in the job")
        elif not live:
            states = ", ".join(sorted({r.approval_state.value for r in mine}))
            problems.append(f"{sku}: {states} (only signed-off or published assets reopen)")
        chosen += live
    if problems:
        raise ReopenRefused(
            "Nothing was reopened: " + "; ".join(problems) + ".",
            hint="Check the SKUs on the studio's contact sheet (or `cutline dam list JOB`); an "
            "asset waiting for a retoucher is in review already.",
        )
    return chosen


@flow(name="reopen-assets", persist_result=True, log_prints=True)
def reopen_assets(
    job_id: str,
    skus: str,
    note: str,
    producer: str,
    output_root: str = "",
) -> State:
    """Send signed-off (or published) assets of a shoot back to the review lane.

    Args:
        job_id: The shoot's job ID.
        skus: The SKUs to reopen, separated by commas; every asset of each goes back to
            review.
        note: For the retoucher: what to fix (the client's feedback). Required.
        producer: Your name; the DAM records who reopened the assets.
        output_root: The output root the shoot wrote to (empty: this host's default).
    """
    validate_job_id(job_id)
    settings = get_settings()
    output_root = output_root or str(settings.resolved_output_root)
    check_location(output_root, "output root")
    producer, note = producer.strip(), note.strip()
    if problem := person_name_problem(producer, "producer"):
        raise ReopenRefused(problem, hint="Enter your name: the DAM records who reopened.")
    if not note:
        raise ReopenRefused(
            "A reopen needs a note: the retoucher must know what to fix.",
            hint="Say what the client asked for in note.",
        )
    wanted = list(dict.fromkeys(sku.strip() for sku in skus.split(",") if sku.strip()))
    if not wanted:
        raise ReopenRefused("Name at least one SKU to reopen.", hint="Fill in skus.")
    layout = JobLayout.for_job(output_root, job_id)
    adapter = create_adapter(job_dam_settings(layout, settings), output_root)
    chosen = reopenable(adapter.list_job(job_id), wanted)
    ctx = shoot_context(layout, job_id, settings)
    reopened = {}
    for record in chosen:
        key = f"reopen:{job_id}:{record.content_hash}:{flow_run.get_id()}"
        run = send_back(adapter, ctx, record, producer, note, key, why="Reopened by producer")
        reopened[f"{record.sku} ({record.source_name})"] = run
        get_run_logger().info(
            "%s (%s) is back in review (run %s): %s", record.sku, record.source_name, run, note
        )
    if why := refresh_review_queue(job_id):
        get_run_logger().warning("%s", why)
    outcome = ReopenOutcome(job_id=job_id, producer=producer, note=note, reopened=reopened)
    return Completed(message=reopen_message(outcome), data=outcome)


def reopen_message(outcome: ReopenOutcome) -> str:
    """The finished run's state message (the UI's run page, `cutline signoff reopen`)."""
    runs = "; ".join(f"{asset} -> review run {run}" for asset, run in outcome.reopened.items())
    return visible_text(
        f"Reopened by {outcome.producer} ({outcome.note}): {runs}. When the last of them is "
        "decided, the shoot asks for sign-off of what changed."
    )[:4000]
