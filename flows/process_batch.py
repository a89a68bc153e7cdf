"""process-batch: every stage for one batch of a shoot, run by whichever worker picks it up.

With CUTLINE_DISTRIBUTE_BATCHES, process-shoot starts one of these per batch from the
`process-batch/batch` deployment, so the workers polling its work pool share the shoot.
"""

from __future__ import annotations

import json
import os
import socket

from prefect import flow

from cutline import storage
from cutline.items import ImageItem
from tasks.context import ShootContext
from tasks.pipeline import run_stages
from tasks.review import request_reviews_batch


def batch_result_uri(ctx: ShootContext, index: int) -> str:
    """Where a batch run leaves its items for the shoot run to collect."""
    return storage.join(ctx.job_root, "batches", f"{index:05d}.json")


@flow(name="process-batch", log_prints=True)
def process_batch(ctx: ShootContext, index: int, items: list[ImageItem]) -> int:
    """Ingest, cut out, score, route, export, register and queue reviews for one batch.

    Args:
        ctx: The shoot the batch belongs to.
        index: The batch's position in the shoot.
        items: The batch's images (references and manifest data, no pixels).
    """
    done = run_stages(items, ctx)
    done = request_reviews_batch.fn(done, ctx)
    worker = {"host": socket.gethostname(), "worker_pid": os.getppid(), "pid": os.getpid()}
    payload = {"index": index, "worker": worker, "items": [i.model_dump(mode="json") for i in done]}
    storage.write_bytes(batch_result_uri(ctx, index), json.dumps(payload).encode("utf-8"))
    return len(done)
