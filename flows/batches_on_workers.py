"""Run a shoot's batches as process-batch flow runs, so several workers share one shoot."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from cutline.records.tally import ShootTally
from flows.outcomes import BatchOutcome, PlannedImage, settle_batch
from tasks.context import BatchRef, ShootContext

_POLL_SECONDS = 2.0


def _start(deployment: str, ctx: ShootContext, batch: BatchRef, total: int) -> UUID:
    """Start (or find again, on a retry of the shoot run) the run of one batch."""
    key = f"batch:{flow_run.get_id()}:{batch.index}"
    for _ in range(3):
        run = run_deployment(
            deployment,
            parameters={"ctx": ctx.model_dump(mode="json"), "batch": batch.model_dump(mode="json")},
            flow_run_name=f"{ctx.job_id} · batch {batch.index + 1}/{total}",
            tags=["cutline", f"job:{ctx.job_id}"],
            idempotency_key=key,
            timeout=0,
            as_subflow=False,
        )
        if not run.state or not run.state.is_final() or run.state.is_completed():
            return run.id
        key = f"{key}:after-{str(run.id)[:8]}"  # that attempt failed: start a fresh one
    return run.id


def _problem(run) -> str | None:
    """Why a batch's run did not finish, or None when it completed."""
    if run.state.is_completed():
        return None
    return f"process-batch run '{run.name}' ended {run.state.name} ({run.state.message or 'no message'})"


def run_batches_on_workers(
    refs: list[BatchRef],
    planned: list[list[PlannedImage]],
    ctx: ShootContext,
    deployment: str,
    on_progress: Callable[[float], None],
    tally: ShootTally,
) -> list[BatchOutcome]:
    """Start one process-batch run per batch, wait for all, and fold every image back into
    the tally as its batch ends."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = {ref.index: _start(deployment, ctx, ref, len(refs)) for ref in refs}
    results: dict[int, BatchOutcome] = {}
    while len(results) < len(refs):
        pending = [i for i in ids if i not in results]
        with get_client(sync_client=True) as client:
            for start in range(0, len(pending), 200):
                chunk = pending[start : start + 200]
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[ids[i] for i in chunk])),
                    limit=200,
                )
                by_id = {run.id: run for run in runs}
                for index in chunk:
                    run = by_id.get(ids[index])
                    if run is not None and run.state is not None and run.state.is_final():
                        results[index] = settle_batch(
                            refs[index], planned[index], _problem(run), tally
                        )
        on_progress(len(results) / len(refs))
        if len(results) < len(refs):
            time.sleep(_POLL_SECONDS)
    return [results[index] for index in sorted(results)]
