"""How a batch ended, and what a shoot does when some of its batches did not finish."""

from __future__ import annotations

from dataclasses import dataclass

from cutline.base.errors import CutlineError, OutputStorageError
from cutline.base.settings import get_settings
from cutline.domain.items import JobLayout
from cutline.records.tally import ShootTally
from tasks.context import TRANSIENT_ERRORS, BatchRef, PlannedImage, load_batch


class ShootIncomplete(CutlineError):
    """Some batches did not finish (storage or DAM unreachable after every retry, a worker
    lost); the ledger lists their images as failed 'not finished'."""


@dataclass(frozen=True)
class BatchOutcome:
    """How a batch ended: why it did not finish (None if it did) and how many of its images
    were left unfinished. Its records went into the shoot's tally."""

    problem: str | None = None
    unfinished: int = 0


def settle_batch(
    ref: BatchRef, planned: list[PlannedImage], problem: str | None, tally: ShootTally
) -> BatchOutcome:
    """Fold the batch's images, as its last completed stage left them (masks, scores, PSDs
    kept), into the tally.

    When the batch did not finish (``problem``), or its records cannot be read back, every
    image not already failed goes to the failed lane marked as not finished, so the batch
    still accounts for every image.
    """
    try:
        items = load_batch(ref)
    except Exception as exc:  # storage down: fall back to what the flow planned
        items = [p.item() for p in planned]
        problem = problem or (
            f"its records could not be read back ({type(exc).__name__}: {exc}), so its outcome "
            "is unknown"
        )
    unfinished = 0
    if problem is not None:
        for item in items:
            if not item.failed:
                item.fail(
                    "batch",
                    f"{problem}; the image was not finished. Rerun the job to retry it "
                    "(finished work is kept and not recomputed).",
                )
                unfinished += 1
    tally.add(ref.index, items)
    return BatchOutcome(problem, unfinished)


def write_ledger_safely(tally: ShootTally, layout: JobLayout, job_id: str) -> tuple[str, str]:
    """Write the ledger in the job folder; when the output storage cannot be reached, write
    it under the data root instead, so a failed run still says what happened to each image.

    Returns the ledger's location and, when it had to fall back, why.
    """
    try:
        return tally.write_ledger(layout), ""
    except (*TRANSIENT_ERRORS, OSError, OutputStorageError) as exc:
        fallback = JobLayout.for_job(str(get_settings().data_root / "unfinished-ledgers"), job_id)
        return tally.write_ledger(fallback), f"{type(exc).__name__}: {exc}"


def incomplete_error(
    job_id: str, outcomes: list[BatchOutcome], ledger: str, ledger_problem: str
) -> ShootIncomplete:
    """The error that ends a run whose batches did not all finish: what, how many, where the
    ledger is, and what to do."""
    broken = [o for o in outcomes if o.problem]
    unfinished = sum(o.unfinished for o in broken)
    where = (
        f"The ledger could not be written to the output storage ({ledger_problem}); it is at {ledger}."
        if ledger_problem
        else f"The ledger {ledger} lists them (lane failed, 'not finished')."
    )
    return ShootIncomplete(
        f"Shoot {job_id} did not finish: {len(broken)} of {len(outcomes)} batches stopped, "
        f"{unfinished} images not finished. First cause: {broken[0].problem}. {where}",
        hint=(
            "Fix the cause (storage or DAM reachable again, worker running), then rerun the "
            "job (Retry in the UI or `cutline run` with the same job ID): finished images are "
            "not recomputed and nothing is registered twice."
        ),
    )
