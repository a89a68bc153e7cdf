"""`cutline task-worker`: one long-lived process per host that runs shoots' batches.

It serves `flows.batch_task.process_batch_on_task_worker` with Prefect's task worker
(`prefect.task_worker.serve`, what ``prefect task serve`` runs): Prefect is imported and the
model loaded once, then batch after batch runs in this process. Before serving it checks
what a batch needs, so a host that could not run one says so at start instead of failing
the shoot's batches one by one: the shared Prefect server (PREFECT_API_URL) and the shared
storage of the batches' parameters, reached with this host's own credentials.
"""

from __future__ import annotations

import os
import socket

from cutline.base import storage
from cutline.base.code_version import code_version
from cutline.base.errors import ConfigError
from cutline.base.settings import CutlineSettings
from cutline.base.task_storage import CutlineStorage
from cutline.domain.locations import check_location


def set_up_storage(uri: str, settings: CutlineSettings) -> CutlineStorage:
    """Save (or replace) the shared storage block every shoot and task worker use."""
    from flows.batch_task import TASK_STORAGE_NAME

    check_location(uri, "task storage", settings)
    block = CutlineStorage(basepath=storage.locate(uri).uri())
    block.save(TASK_STORAGE_NAME, overwrite=True)
    return block


def _check_reachable(block: CutlineStorage) -> None:
    """Write and read back a small file with this host's credentials."""
    probe = f"probes/{socket.gethostname()}-{os.getpid()}"
    try:
        block.write_path(probe, b"cutline task worker")
        block.read_path(probe)
        block.delete_path(probe)
    except Exception as exc:
        raise ConfigError(
            f"This host, {socket.gethostname()}, cannot use the shared task storage "
            f"{block.basepath}: {type(exc).__name__}: {exc}.",
            hint="Give this host access to it (for s3:// its CUTLINE_S3_* settings), or point "
            "every host at storage they all reach with `cutline task-worker --storage URI`.",
        ) from exc


def prepare(settings: CutlineSettings, storage_uri: str | None) -> CutlineStorage:
    """Check this host can run batches; return the shared storage it will use."""
    from prefect.settings import PREFECT_API_URL

    from flows.batches_on_task_workers import shared_task_storage

    if not PREFECT_API_URL.value():
        raise ConfigError(
            "A task worker needs the shared Prefect server, and PREFECT_API_URL is not set.",
            hint="Set PREFECT_API_URL to the server every host uses (e.g. "
            "http://prefect.studio.lan:4200/api); a temporary server would see no shoot.",
        )
    block = set_up_storage(storage_uri, settings) if storage_uri else shared_task_storage()
    _check_reachable(block)
    return block


def run(settings: CutlineSettings, limit: int | None, storage_uri: str | None) -> None:
    """Serve batches until stopped (Ctrl-C or SIGTERM)."""
    block = prepare(settings, storage_uri)
    from flows.batch_task import process_batch_on_task_worker, serve_batches

    slots = limit or settings.workers
    print(
        f"Task worker {socket.gethostname()}-{os.getpid()} (Cutline {code_version()}): "
        f"running up to {slots} batches at "
        f"once (task {process_batch_on_task_worker.task_key}); batch parameters in "
        f"{block.basepath}. Ctrl-C stops it.",
        flush=True,
    )
    serve_batches(slots)
