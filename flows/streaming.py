"""Batches stream through the stages: a batch moves to its next stage as soon as it is free.

The flow submits only tasks that can start (no thread waits on an upstream task) and never
more than ``slots`` at a time; among the tasks that could start, the batch furthest along
goes first. So the first batch reaches the DAM, and its reviews wait for a retoucher, while
later batches are still being cut out, instead of after the whole shoot's cutouts.

The model's stages (``model_stages``) have slots of their own (``model_slots``): a batch
is cut out while earlier batches are scored and exported, instead of the model waiting for
their lighter stages to finish (issue 17: two exports at once left the cores a third idle,
waiting on the GIL and the API, while the next batches waited to be cut out).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Collection, Sequence

from prefect import Task
from prefect.futures import PrefectFuture

from cutline.base.settings import BatchOrder
from tasks.context import BatchRef, ShootContext

_PROGRESS_SECONDS = 3.0


def _problem(task: Task, future: PrefectFuture) -> str:
    """Why a stage task did not complete for its batch (after its retries)."""
    try:
        future.result(raise_on_failure=True)
        reason = future.state.message or future.state.name
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    return f"{task.name} failed for this batch ({reason})"


class _Stream:
    """The state of one `stream_batches` call: which tasks are ready, which run, and the
    rules for which may start next."""

    def __init__(
        self,
        refs: Sequence[BatchRef],
        stage_tasks: Sequence[Task],
        ctx: ShootContext,
        slots: int,
        order: BatchOrder,
        model_stages: Collection[int],
        model_slots: int,
    ) -> None:
        self.refs, self.stage_tasks, self.ctx = refs, stage_tasks, ctx
        self.slots, self.order = slots, order
        self.pooled = bool(model_stages) and order == BatchOrder.STREAMING
        self.model_stages, self.model_slots = model_stages, model_slots
        # Ready tasks as (priority, batch, stage); the smallest starts first.
        self.ready: list[tuple[int, int, int]] = []
        self.next_new = 0  # batches are started lazily, so a later stage can overtake them
        self.running: dict[concurrent.futures.Future, tuple[int, int, PrefectFuture]] = {}
        self.finished = 0

    @property
    def busy(self) -> bool:
        return self.next_new < len(self.refs) or bool(self.ready) or bool(self.running)

    def priority(self, stage: int) -> int:
        return -stage if self.order == BatchOrder.STREAMING else stage

    def is_model(self, stage: int) -> bool:
        return self.pooled and stage in self.model_stages

    def free(self, model: bool) -> bool:
        busy = sum(self.is_model(stage) == model for _, stage, _ in self.running.values())
        return busy < (self.model_slots if model else self.slots)

    def model_queue_full(self) -> bool:
        """Enough batches are on their way to the model (ready for it, or in the stages
        before it) to keep its slots busy: a new batch would only take cores from them."""
        if not self.pooled:
            return False
        first = min(self.model_stages)
        coming = sum(self.is_model(e[2]) for e in self.ready)
        coming += sum(stage < first for _, stage, _ in self.running.values())
        return coming >= self.model_slots

    def start_next(self, model: bool) -> bool:
        """Start the first task of the kind (model stage or not) that may start now."""
        best = min((e for e in self.ready if self.is_model(e[2]) == model), default=None)
        new_allowed = (
            self.next_new < len(self.refs)
            and self.is_model(0) == model
            and not self.model_queue_full()
        )
        if new_allowed and (best is None or self.priority(0) < best[0]):
            batch, stage = self.next_new, 0
            self.next_new += 1
        elif best is not None:
            self.ready.remove(best)
            _, batch, stage = best
        else:
            return False
        future = self.stage_tasks[stage].submit(self.refs[batch], self.ctx)
        self.running[future.wrapped_future] = (batch, stage, future)
        return True

    def fill(self) -> None:
        """Start tasks while there are free slots and tasks that may start."""
        for model in (True, False) if self.pooled else (False,):
            while self.free(model) and self.start_next(model):
                pass

    def settle(
        self, wrapped: concurrent.futures.Future, on_settled: Callable[[int, str | None], None]
    ) -> None:
        """A task ended: queue its batch's next stage, or say how the batch ended."""
        batch, stage, future = self.running.pop(wrapped)
        future.wait()  # keeps the final state the task returned (the API may lag behind)
        if future.state.is_completed():
            self.finished += 1
            if stage + 1 < len(self.stage_tasks):
                self.ready.append((self.priority(stage + 1), batch, stage + 1))
            else:
                on_settled(batch, None)
        else:
            self.finished += len(self.stage_tasks) - stage  # the stages it will not run count
            on_settled(batch, _problem(self.stage_tasks[stage], future))


def stream_batches(
    refs: Sequence[BatchRef],
    stage_tasks: Sequence[Task],
    ctx: ShootContext,
    *,
    slots: int,
    on_settled: Callable[[int, str | None], None],
    on_progress: Callable[[float], None] = lambda fraction: None,
    order: BatchOrder = BatchOrder.STREAMING,
    model_stages: Collection[int] = (),
    model_slots: int = 0,
) -> None:
    """Run every batch through ``stage_tasks`` in order: at most ``slots`` tasks at a time,
    and besides them at most ``model_slots`` of the stages in ``model_stages`` (indexes into
    ``stage_tasks``). Without model stages, and in stage-by-stage order (kept as it was, for
    comparison), every stage shares ``slots``.

    ``on_settled(index, problem)`` is called in this thread as each batch ends: ``problem``
    is None when every stage completed, else the first stage that failed (the later stages
    are not run for that batch). ``on_progress`` gets the share of stage work done.
    """
    stream = _Stream(refs, stage_tasks, ctx, slots, order, model_stages, model_slots)
    if slots < 1 or (stream.pooled and model_slots < 1):
        raise ValueError("stream_batches needs at least one slot for each kind of stage")
    total = len(refs) * len(stage_tasks)
    while stream.busy:
        stream.fill()
        done, _ = concurrent.futures.wait(
            list(stream.running),
            timeout=_PROGRESS_SECONDS,
            return_when=concurrent.futures.FIRST_COMPLETED,
        )
        for wrapped in done:
            stream.settle(wrapped, on_settled)
        on_progress(stream.finished / max(1, total))
