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
    pooled = bool(model_stages) and order == BatchOrder.STREAMING
    if slots < 1 or (pooled and model_slots < 1):
        raise ValueError("stream_batches needs at least one slot for each kind of stage")
    total = len(refs) * len(stage_tasks)
    # Ready tasks as (priority, batch, stage); the smallest starts first.
    ready: list[tuple[int, int, int]] = []
    next_new = 0  # batches are started lazily, so a later stage can overtake them
    running: dict[concurrent.futures.Future, tuple[int, int, PrefectFuture]] = {}
    finished = 0

    def priority(stage: int) -> int:
        return -stage if order == BatchOrder.STREAMING else stage

    def is_model(stage: int) -> bool:
        return pooled and stage in model_stages

    def free(model: bool) -> bool:
        busy = sum(is_model(stage) == model for _, stage, _ in running.values())
        return busy < (model_slots if model else slots)

    def model_queue_full() -> bool:
        """Enough batches are on their way to the model (ready for it, or in the stages
        before it) to keep its slots busy: a new batch would only take cores from them."""
        if not pooled:
            return False
        first = min(model_stages)
        coming = sum(is_model(e[2]) for e in ready)
        coming += sum(stage < first for _, stage, _ in running.values())
        return coming >= model_slots

    def start_next(model: bool) -> bool:
        """Start the first task of the kind (model stage or not) that may start now."""
        nonlocal next_new
        best = min((e for e in ready if is_model(e[2]) == model), default=None)
        new_allowed = next_new < len(refs) and is_model(0) == model and not model_queue_full()
        if new_allowed and (best is None or priority(0) < best[0]):
            batch, stage = next_new, 0
            next_new += 1
        elif best is not None:
            ready.remove(best)
            _, batch, stage = best
        else:
            return False
        future = stage_tasks[stage].submit(refs[batch], ctx)
        running[future.wrapped_future] = (batch, stage, future)
        return True

    while next_new < len(refs) or ready or running:
        for model in (True, False) if pooled else (False,):
            while free(model) and start_next(model):
                pass
        done, _ = concurrent.futures.wait(
            list(running), timeout=_PROGRESS_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED
        )
        for wrapped in done:
            batch, stage, future = running.pop(wrapped)
            future.wait()  # keeps the final state the task returned (the API may lag behind)
            if future.state.is_completed():
                finished += 1
                if stage + 1 < len(stage_tasks):
                    ready.append((priority(stage + 1), batch, stage + 1))
                else:
                    on_settled(batch, None)
            else:
                finished += len(stage_tasks) - stage  # the stages it will not run count as done
                on_settled(batch, _problem(stage_tasks[stage], future))
        on_progress(finished / max(1, total))
