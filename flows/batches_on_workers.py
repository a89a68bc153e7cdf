"""Run a shoot's batches as process-batch flow runs, so several workers share one shoot.

A worker host can die mid-batch (power, OOM killer, a pulled cable): its batch runs stay
Running with nobody behind them. The shoot watches for that: a batch run silent for
CUTLINE_STRANDED_AFTER_SECONDS (no Prefect heartbeat) is marked Crashed, and a Crashed batch
is started again (up to ``MAX_BATCH_ATTEMPTS`` runs per batch) for the workers still polling
the pool; its finished work is reused and nothing is registered twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from prefect import get_run_logger
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from cutline.base.settings import get_settings
from cutline.records.tally import ShootTally
from cutline.services.stranded_runs import recover_stranded_runs
from flows.outcomes import BatchOutcome, PlannedImage, settle_batch
from tasks.context import BatchRef, ShootContext

_POLL_SECONDS = 2.0
MAX_BATCH_ATTEMPTS = 3  # runs of one batch: the first and two after lost workers


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


def _crash_silent_runs(job_id: str, stale_after: float) -> None:
    """Mark this job's runs whose process stopped (no heartbeat for ``stale_after`` s)
    Crashed, or, for reviews and sign-offs, run them again (see stranded_runs)."""
    for run in recover_stranded_runs(stale_after, job_id):
        get_run_logger().warning(
            "%s %s run %s: its process had stopped", run.action, run.flow, run.name
        )


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
    attempts = dict.fromkeys(ids, 1)
    stale_after = get_settings().stranded_after_seconds
    next_look = time.monotonic() + stale_after / 2
    results: dict[int, BatchOutcome] = {}
    while len(results) < len(refs):
        if time.monotonic() >= next_look:  # batch runs whose worker died: mark them Crashed
            _crash_silent_runs(ctx.job_id, stale_after)
            next_look = time.monotonic() + stale_after / 2
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
                    if run is None or run.state is None or not run.state.is_final():
                        continue
                    if run.state.is_crashed() and attempts[index] < MAX_BATCH_ATTEMPTS:
                        get_run_logger().warning(
                            "Batch %d of %s: run '%s' crashed (%s); starting it again on the "
                            "workers still polling the pool",
                            index + 1,
                            ctx.job_id,
                            run.name,
                            run.state.message or "no message",
                        )
                        ids[index] = _start(deployment, ctx, refs[index], len(refs))
                        attempts[index] += 1
                    else:
                        results[index] = settle_batch(
                            refs[index], planned[index], _problem(run), tally
                        )
        on_progress(len(results) / len(refs))
        if len(results) < len(refs):
            time.sleep(_POLL_SECONDS)
    return [results[index] for index in sorted(results)]
