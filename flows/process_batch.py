"""process-batch: every stage for one batch of a shoot, run by whichever worker picks it up.

With CUTLINE_DISTRIBUTE_BATCHES, process-shoot writes each batch's records to the job
folder and starts one of these per batch from the `process-batch/batch` deployment, so the
workers polling its work pool share the shoot. The stages are the same tasks, with the same
retries, as when the shoot runs its batches itself (`tasks.stages`).
"""

from __future__ import annotations

import os
import socket

from prefect import flow

from flows.batch_task import check_batch
from tasks.context import BatchRef, ShootContext, load_batch, save_batch
from tasks.stages import stage_tasks


@flow(name="process-batch", log_prints=True)
def process_batch(ctx: ShootContext, batch: BatchRef) -> int:
    """Ingest, cut out, score, route, export, register and queue reviews for one batch.

    Args:
        ctx: The shoot the batch belongs to.
        batch: The batch's handle; its image records are in the job folder.
    """
    check_batch(ctx, batch)
    for stage_task in stage_tasks(ctx.config):
        batch = stage_task(batch, ctx)  # raises when the stage fails after its retries
    items = load_batch(batch)
    worker = {"host": socket.gethostname(), "worker_pid": os.getppid(), "pid": os.getpid()}
    save_batch(ctx, batch.index, items, extra={"worker": worker})
    return len(items)
