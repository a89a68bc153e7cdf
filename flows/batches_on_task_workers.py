"""Run a shoot's batches as background task runs on long-lived Prefect task workers.

Each batch is one run of `flows.batch_task.process_batch_on_task_worker`, submitted with
``Task.apply_async`` from the shoot run; the Prefect server queues it (in its memory) and hands
it over a websocket to one of the task workers serving that task (`cutline task-worker` on
any host), which runs every stage of the batch in its already warm process.

What Prefect 3.9 does not do, the shoot does here:

- **A task worker that dies keeps its runs.** The server forgets a run once a worker has
  acknowledged it; nothing times it out (task runs have no heartbeat) and nothing hands it to
  another worker. A worker acknowledges one run more than it is running (its ``limit``
  is checked after the acknowledgement), so a dead worker holds its running batches and one
  not started. The shoot watches which workers the server lists as serving the task; a
  worker missing from the list on ``_GONE_AFTER_POLLS`` polls in a row is gone. Its claimed
  batches (`flows.batch_attempts`) are marked Crashed and submitted again, and every batch
  not yet claimed that was submitted before it went is given up and submitted again (a
  superseded run that still starts somewhere ends Cancelled without working). A batch is
  tried ``MAX_BATCH_ATTEMPTS`` times in one shoot run; its finished work is reused.
- **The queue lives in the server's memory.** A server restart forgets the runs no worker
  has taken: after the API was unreachable the shoot gives up and resubmits its unclaimed
  batches the same way.
- **Bounded submission.** At most two batches per slot of the live workers are submitted at
  a time (``_window``), so the server's queue never holds a whole 20,000-image shoot (its
  default cap, PREFECT_TASK_SCHEDULING_MAX_SCHEDULED_QUEUE_SIZE, is 1,000 runs) and a
  lost queue costs little to resubmit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.exceptions import ObjectNotFound

from cutline.base.errors import ConfigError
from cutline.base.settings import get_settings
from cutline.base.task_storage import CutlineStorage
from cutline.records.tally import ShootTally
from flows.batch_attempts import allow_attempt, allowed_attempt, read_claim
from flows.batch_task import TASK_STORAGE, TASK_STORAGE_NAME, process_batch_on_task_worker
from flows.outcomes import BatchOutcome, PlannedImage, settle_batch
from tasks.context import TRANSIENT_ERRORS, BatchRef, ShootContext

_POLL_SECONDS = 2.0
_GONE_AFTER_POLLS = 3  # a worker missing from the server's list this many polls in a row
MAX_BATCH_ATTEMPTS = 3  # task runs of one batch in one shoot run


def shared_task_storage() -> CutlineStorage:
    """The storage every task worker and shoot keep batch runs' parameters in; refuses to
    start when none is set up, since a task worker could not read what the shoot wrote."""
    try:
        block = CutlineStorage.load(TASK_STORAGE_NAME)
    except ValueError:
        raise ConfigError(
            f"No shared storage for task-worker batches: the Prefect server has no block "
            f"{TASK_STORAGE!r}.",
            hint="Run `cutline task-worker --storage URI` once on any host, with a folder or "
            "s3:// URI every host reaches (e.g. s3://studio-cutline/task-runs), or set "
            "CUTLINE_BATCH_RUNNER to in-process or flow-runs.",
        ) from None
    return block  # type: ignore[return-value]


class WorkerWatch:
    """Which task workers the Prefect server lists as serving the batch task, and which of
    them went away (the server drops a worker whose websocket closed: a killed process, a
    lost host)."""

    def __init__(self, task_key: str) -> None:
        self.task_key = task_key
        self.live: set[str] = set()
        self.gone: set[str] = set()
        self.last_loss = float("-inf")  # when a worker, or the server's queue, was last lost
        self._missing: dict[str, int] = {}
        self._unreachable = False

    def poll(self, client) -> None:
        """Ask the server once; a worker missing ``_GONE_AFTER_POLLS`` times is gone."""
        try:
            response = client.request(
                "POST",
                "/task_workers/filter",
                json={"task_worker_filter": {"task_keys": [self.task_key]}},
            )
            listed = {worker["identifier"] for worker in response.json()}
        except (*TRANSIENT_ERRORS, OSError, httpx.HTTPStatusError):
            self._unreachable = True  # a restarted server has forgotten its queue
            return
        if self._unreachable:
            self._unreachable = False
            self.last_loss = time.monotonic()
        for worker in (self.live | set(self._missing)) - listed:
            self._missing[worker] = self._missing.get(worker, 0) + 1
            if self._missing[worker] >= _GONE_AFTER_POLLS:
                del self._missing[worker]
                self.gone.add(worker)
                self.last_loss = time.monotonic()
        for worker in listed:
            self._missing.pop(worker, None)
        self.live = listed - self.gone


@dataclass
class _Batch:
    """One batch's runs in this shoot run."""

    ref: BatchRef
    planned: list[PlannedImage]
    attempt: int = 0  # the attempt of ``run_id``
    allowed: int = 0  # the attempt the shoot allows now (ahead of ``attempt`` once given up)
    tries: int = 0
    run_id: UUID | None = None
    submitted: float = 0.0
    worker: str | None = None  # the task worker that claimed ``attempt``
    runs: list[UUID] = field(default_factory=list)


def _window(workers: WorkerWatch, ctx: ShootContext) -> int:
    """Batches submitted and not yet ended at most: two per slot of the live workers (each
    runs CUTLINE_WORKERS batches at once), so every worker has its next batch at hand."""
    return 2 * ctx.config.workers * max(1, len(workers.live))


class _ShootBatches:
    """The batches of one shoot run on task workers: what is submitted, claimed, ended."""

    def __init__(self, refs, planned, ctx: ShootContext, tally: ShootTally, client) -> None:
        self.ctx, self.tally, self.client = ctx, tally, client
        self.shared = shared_task_storage()
        self.logger = get_run_logger()
        self.workers = WorkerWatch(process_batch_on_task_worker.task_key)
        self.waiting = [_Batch(ref, plan) for ref, plan in zip(refs, planned, strict=True)][::-1]
        self.active: dict[int, _Batch] = {}
        self.results: dict[int, BatchOutcome] = {}
        self._nobody_since: float | None = None

    # -- one poll -------------------------------------------------------------------------

    def step(self) -> None:
        """Look at the workers, submit what the window allows, move every batch on."""
        self.workers.poll(self.client)
        if self._no_worker_for_too_long():
            return
        while self.waiting and len(self.active) < _window(self.workers, self.ctx):
            batch = self.waiting.pop()
            batch.allowed = allowed_attempt(self.ctx, batch.ref.index)  # earlier shoot runs'
            self.active[batch.ref.index] = batch
            self._submit(batch, self._next_attempt(batch))
        runs = _read_runs(self.client, [b.run_id for b in self.active.values() if b.run_id])
        for batch in list(self.active.values()):
            self._follow(batch, runs.get(batch.run_id))

    def _no_worker_for_too_long(self) -> bool:
        """Warn when no task worker serves the batch task; after
        CUTLINE_STRANDED_AFTER_SECONDS of none, settle every batch left as not finished."""
        if self.workers.live:
            self._nobody_since = None
            return False
        if self._nobody_since is None:
            self._nobody_since = time.monotonic()
            self.logger.warning(
                "No task worker serves the batches of %s (task %s): start `cutline "
                "task-worker` on a host with this version of Cutline",
                self.ctx.job_id,
                self.workers.task_key,
            )
            return False
        wait = get_settings().stranded_after_seconds
        if time.monotonic() - self._nobody_since <= wait:
            return False
        why = (
            f"no task worker served task {self.workers.task_key} for {wait:.0f} s "
            "(CUTLINE_STRANDED_AFTER_SECONDS)"
        )
        self.stand_down()  # a worker starting later must not run what the shoot gave up
        for batch in [*self.active.values(), *self.waiting]:
            self._settle(batch, why)
        self.waiting.clear()
        return True

    def _follow(self, batch: _Batch, run) -> None:
        """Move one batch on from what its current run's state says."""
        if run is None:  # a task worker deletes a run whose parameters it could not read
            self._again(batch, "its task run was deleted (a task worker could not read it?)")
            return
        state = run.state
        if state is None:  # read between the run's creation and its first state: not begun
            return
        if state.is_final():
            message = state.message or state.name
            if state.is_completed():
                self._settle(batch, None)
            elif state.is_cancelled() and batch.allowed > batch.attempt:
                self._again(batch, f"attempt {batch.attempt} was superseded")
            elif state.is_crashed():
                self._again(batch, f"task run '{run.name}' crashed ({message})")
            else:
                self._settle(batch, f"task run '{run.name}' ended {state.name} ({message})")
            return
        if batch.worker is None and not state.is_scheduled():
            claim = read_claim(self.ctx, batch.ref.index, batch.attempt)
            batch.worker = claim["worker"] if claim else None
        if batch.worker is not None and batch.worker in self.workers.gone:
            self._give_up(batch, f"its task worker {batch.worker} was lost mid-batch", True)
        elif batch.worker is None and self.workers.last_loss > batch.submitted:
            # a worker lost since it was submitted may have taken it without starting it
            self._give_up(batch, "a task worker was lost before the batch started", False)

    def stand_down(self) -> None:
        """The shoot run stops: give every unfinished batch up, so the task workers stop
        them at their next stage and skip those not started (a rerun sends them again)."""
        for batch in self.active.values():
            with contextlib.suppress(Exception):
                self._next_attempt(batch)
                _end_run(self.client, batch.run_id, "the shoot run stopped", crashed=False)

    # -- what happens to a batch ----------------------------------------------------------

    def _submit(self, batch: _Batch, attempt: int) -> None:
        """Send ``attempt`` (already allowed) of the batch to the task workers."""
        future = process_batch_on_task_worker.apply_async(
            kwargs={"ctx": self.ctx, "batch": batch.ref, "attempt": attempt}
        )
        batch.attempt, batch.run_id, batch.worker = attempt, future.task_run_id, None
        batch.tries += 1
        batch.submitted = time.monotonic()
        batch.runs.append(future.task_run_id)

    def _next_attempt(self, batch: _Batch) -> int:
        """Allow the batch's next attempt: every earlier one is given up from now on."""
        batch.allowed = max(batch.allowed, batch.attempt) + 1
        allow_attempt(self.ctx, batch.ref.index, batch.allowed)
        return batch.allowed

    def _settle(self, batch: _Batch, problem: str | None) -> None:
        self.results[batch.ref.index] = settle_batch(batch.ref, batch.planned, problem, self.tally)
        self.active.pop(batch.ref.index, None)
        _forget_runs(self.client, self.shared, batch.runs)

    def _again(self, batch: _Batch, why: str) -> None:
        """Submit the batch again after ``why``, or settle it once it has had its tries."""
        if batch.tries >= MAX_BATCH_ATTEMPTS:
            self._settle(batch, f"{why}; given up after {batch.tries} attempts")
            return
        self.logger.warning(
            "Batch %d of %s: %s; sending it to the task workers again",
            batch.ref.index + 1,
            self.ctx.job_id,
            why,
        )
        ahead = batch.allowed > batch.attempt  # the next attempt is allowed already
        self._submit(batch, batch.allowed if ahead else self._next_attempt(batch))

    def _give_up(self, batch: _Batch, why: str, started: bool) -> None:
        """Give up the batch's current run and send the batch again. A run not known to have
        started is looked for once more after the next attempt is allowed: found started by
        a live worker, it is waited for (it works, or it ends Cancelled as superseded)."""
        self._next_attempt(batch)
        if not started:
            claim = read_claim(self.ctx, batch.ref.index, batch.attempt)
            if claim is not None and claim["worker"] not in self.workers.gone:
                batch.worker = claim["worker"]
                return
        _end_run(self.client, batch.run_id, why, crashed=started)
        self._again(batch, why)


def run_batches_on_task_workers(
    refs: list[BatchRef],
    planned: list[list[PlannedImage]],
    ctx: ShootContext,
    on_progress: Callable[[float], None],
    tally: ShootTally,
) -> list[BatchOutcome]:
    """Submit one background task run per batch, keep them going while task workers come
    and go, and fold every image back into the tally as its batch ends."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        batches = _ShootBatches(refs, planned, ctx, tally, client)
        try:
            while len(batches.results) < len(refs):
                batches.step()
                on_progress(len(batches.results) / len(refs))
                if len(batches.results) < len(refs):
                    time.sleep(_POLL_SECONDS)
        except BaseException:  # the shoot run stops (cancelled, Ctrl-C, an error)
            batches.stand_down()
            raise
    return [batches.results[index] for index in sorted(batches.results)]


def _read_runs(client, ids: list[UUID]) -> dict:
    """The task runs with these ids, by id (those deleted are missing)."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterId

    runs = {}
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        found = client.read_task_runs(
            task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=chunk)), limit=200
        )
        runs.update({run.id: run for run in found})
    return runs


def _end_run(client, run_id: UUID | None, why: str, crashed: bool) -> None:
    """Mark a given-up run Crashed (its worker died) or Cancelled (it never started), so
    the UI says why; a superseded run that starts anyway stops on its own."""
    from prefect.states import Cancelled, Crashed

    if run_id is None:
        return
    state = Crashed if crashed else Cancelled
    with contextlib.suppress(ObjectNotFound):
        client.set_task_run_state(
            run_id, state(message=f"Given up by the shoot: {why}"), force=True
        )


def _forget_runs(client, shared: CutlineStorage, run_ids: list[UUID]) -> None:
    """Delete the parameters and results the batch's runs left in the shared storage (the
    ledger and the job folder keep what matters); what cannot be deleted now stays."""
    for run_id in run_ids:
        try:
            for state in client.read_task_run_states(run_id):
                parameters = state.state_details.task_parameters_id
                if parameters is not None:
                    shared.delete_path(f"parameters/{parameters}")
                data = state.data
                key = getattr(data, "storage_key", None) or (
                    data.get("storage_key") if isinstance(data, dict) else None
                )
                if key:
                    shared.delete_path(key)
        except (*TRANSIENT_ERRORS, OSError, ObjectNotFound):
            continue
