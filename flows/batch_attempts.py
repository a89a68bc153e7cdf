"""Which attempt of a batch may work on it: the shoot's word against the task runs' claims.

A batch sent to a task worker can be lost with that worker (killed, its host gone); the shoot
then sends the batch again as a new attempt. Two attempts must never work on one batch at
once: both would write its records. So each batch has two kinds of small files in
``<job>/batch-attempts/``:

- ``NNNNN.current``: the attempt the shoot allows, written by the shoot before it submits
  that attempt (or gives the one before up);
- ``NNNNN-K.json``: attempt K's claim, written by its task run as it starts: which task
  worker (host and process) runs it, and its task run.

Each side writes its own file, then reads the other's: a task run writes its claim, then
works only if its attempt is still the current one; the shoot, giving up an attempt that has
not started, first allows the next, then looks for the old one's claim. Whatever the order,
one of them sees the other (storage with read-after-write consistency: a local or shared
disk, S3), so an attempt the shoot gave up never works unless the shoot saw its claim and
waits for it to end. Attempt numbers only grow, across reruns of the job too, so a run left
over from an earlier shoot run finds itself superseded.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime

from cutline.base import storage
from tasks.context import ShootContext

FOLDER = "batch-attempts"


def task_worker_id() -> str:
    """This process's id as a Prefect task worker: what the server lists for it among the
    workers serving a task (`TaskWorker.client_id`: host name and process id)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _current_uri(ctx: ShootContext, index: int) -> str:
    return storage.join(ctx.job_root, FOLDER, f"{index:05d}.current")


def _claim_uri(ctx: ShootContext, index: int, attempt: int) -> str:
    return storage.join(ctx.job_root, FOLDER, f"{index:05d}-{attempt}.json")


def allow_attempt(ctx: ShootContext, index: int, attempt: int) -> None:
    """Make ``attempt`` the only one that may work on batch ``index`` from now on."""
    storage.write_bytes(_current_uri(ctx, index), str(attempt).encode("ascii"))


def allowed_attempt(ctx: ShootContext, index: int) -> int:
    """The attempt allowed to work on batch ``index``; 0 before the first."""
    uri = _current_uri(ctx, index)
    if not storage.exists(uri):
        return 0
    return int(storage.read_bytes(uri).decode("ascii").strip() or 0)


def claim_attempt(ctx: ShootContext, index: int, attempt: int, task_run_id: str) -> bool:
    """Record that this process starts ``attempt`` of batch ``index``; whether it may work
    (the attempt is still the one the shoot allows)."""
    claim = {
        "attempt": attempt,
        "worker": task_worker_id(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "task_run_id": task_run_id,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    storage.write_bytes(_claim_uri(ctx, index, attempt), json.dumps(claim).encode("utf-8"))
    return still_allowed(ctx, index, attempt)


def still_allowed(ctx: ShootContext, index: int, attempt: int) -> bool:
    """Whether ``attempt`` is still the one the shoot allows for batch ``index``."""
    return allowed_attempt(ctx, index) == attempt


def read_claim(ctx: ShootContext, index: int, attempt: int) -> dict | None:
    """Attempt ``attempt``'s claim on batch ``index``, or None while it has not started."""
    uri = _claim_uri(ctx, index, attempt)
    if not storage.exists(uri):
        return None
    return json.loads(storage.read_bytes(uri))
