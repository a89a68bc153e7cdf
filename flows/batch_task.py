"""process-batch-task: every stage of one batch as a Prefect background task run.

With CUTLINE_BATCH_RUNNER=task-workers, process-shoot submits one run of this task per batch
(`flows.batches_on_task_workers`) and long-lived task workers (`cutline task-worker`, or
``prefect task serve --module flows.batch_task``) run them: one Python process per host that
imports Prefect and loads the model once, then runs batch after batch, instead of a process
per batch (`process-batch` flow runs on a process work pool). The stages are the same tasks,
with the same retries, as when the shoot runs its batches itself (`tasks.stages`).

Prefect keeps a background task run's parameters and result in the task's result storage,
which the submitting shoot and every task worker must reach: here the `cutline-storage`
block named ``TASK_STORAGE`` on the Prefect server (see `cutline.base.task_storage`).
"""

from __future__ import annotations

import socket
from typing import Any

from prefect import task
from prefect.runtime import task_run
from prefect.states import Cancelled, State

from cutline.base.code_version import code_version
from cutline.base.errors import ConfigError
from cutline.base.task_storage import CutlineStorage
from cutline.domain.locations import check_location
from cutline.imaging.segmenter import loaded_session_count
from flows.batch_attempts import claim_attempt, still_allowed, task_worker_id
from tasks.context import BatchRef, ShootContext, load_batch, save_batch
from tasks.stages import stage_tasks

TASK_STORAGE_NAME = "batch-runs"
# The block document (type/name) holding the shared storage's location on the Prefect server.
TASK_STORAGE = f"{CutlineStorage.get_block_type_slug()}/{TASK_STORAGE_NAME}"


def _never_cached(context: Any, parameters: dict[str, Any]) -> None:
    """No cache key: every run of a batch runs (the stages reuse finished work through the
    job's work records; a cached result would skip writing the batch's records). A task
    worker would otherwise give the task Prefect's default cache policy."""
    return None


def check_batch(ctx: ShootContext, batch: BatchRef) -> None:
    """Refuse a batch (e.g. typed into a run by hand) outside its shoot's job folder, a
    shoot whose folders break the studio's location rules, or a batch of a shoot started on
    other Cutline code than this host runs."""
    check_code_version(ctx)
    ctx.check_locations()
    check_location(batch.uri, "batch file")
    if not batch.uri.startswith(ctx.job_root.rstrip("/") + "/"):
        raise ConfigError(
            f"Batch file {batch.uri} is not in the job folder {ctx.job_root}.",
            hint="Let process-shoot start batch runs, not a person.",
        )


def check_code_version(ctx: ShootContext) -> None:
    """Refuse to run part of a shoot that was started by other Cutline code: its batches
    would be cut out, routed or recorded differently from the rest, and nobody told."""
    wanted, mine = ctx.config.code_version, code_version()
    if wanted and wanted != mine:
        raise ConfigError(
            f"This host, {socket.gethostname()}, runs Cutline {mine}, but shoot {ctx.job_id} "
            f"was started on Cutline {wanted}: a batch of it is not run on other code.",
            hint="Install the same Cutline on every worker host (the same release, or "
            "`git pull && bash scripts/setup.sh` in each host's copy), restart the host's "
            "workers, then rerun the job (finished images are kept).",
        )


def _superseded(ctx: ShootContext, batch: BatchRef, attempt: int) -> State:
    return Cancelled(
        message=f"Attempt {attempt} of batch {batch.index + 1} of {ctx.job_id} was superseded: "
        "the shoot gave it up (its task worker looked lost) and sent the batch again."
    )


@task(
    name="process-batch-task",
    description="Every stage of one batch of a shoot, on a long-lived task worker.",
    result_storage=TASK_STORAGE,
    persist_result=True,  # a task worker persists anyway; said here so both sides agree
    cache_key_fn=_never_cached,
    cache_result_in_memory=False,
)
def process_batch_on_task_worker(ctx: ShootContext, batch: BatchRef, attempt: int) -> Any:
    """Ingest, cut out, score, route, export, register and queue reviews for one batch.

    Args:
        ctx: The shoot the batch belongs to.
        batch: The batch's handle; its image records are in the job folder.
        attempt: Which attempt of the batch this is (see `flows.batch_attempts`): a run
            whose attempt the shoot has given up ends Cancelled without working.
    """
    check_batch(ctx, batch)
    if not claim_attempt(ctx, batch.index, attempt, str(task_run.get_id())):
        return _superseded(ctx, batch, attempt)
    for stage_task in stage_tasks(ctx.config):
        # Not persisted, as in the shoot's own process (a task worker's run would otherwise
        # pass its own persistence on and store every stage's return in the shared storage).
        stage_task = stage_task.with_options(persist_result=False)
        batch = stage_task(batch, ctx)  # raises when the stage fails after its retries
        if not still_allowed(ctx, batch.index, attempt):  # lost touch, and was replaced
            return _superseded(ctx, batch, attempt)
    items = load_batch(batch)
    worker = {
        "host": socket.gethostname(),
        "task_worker": task_worker_id(),
        "attempt": attempt,
        # model sessions this process holds after the batch: 1 on a task worker that has
        # run any number of batches with one model
        "model_sessions": loaded_session_count(),
    }
    save_batch(ctx, batch.index, items, extra={"worker": worker})
    return len(items)


def serve_batches(limit: int) -> None:
    """Run batches submitted by shoots in this process until it is stopped: at most
    ``limit`` at once, each with its own thread, all sharing the process's model session."""
    from prefect.task_worker import serve

    serve(process_batch_on_task_worker, limit=limit)
