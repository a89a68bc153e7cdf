"""Batches stream through the stages: a batch moves to its next stage as soon as it is free.

The flow submits only tasks that can start (no thread waits on an upstream task) and never
more than ``slots`` at a time; among the tasks that could start, the batch furthest along
goes first. So the first batch reaches the DAM, and its reviews wait for a retoucher, while
later batches are still being cut out, instead of after the whole shoot's cutouts.
"""

from __future__ import annotations

import concurrent.futures
import heapq
from collections.abc import Callable, Sequence

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
) -> None:
    """Run every batch through ``stage_tasks`` in order, at most ``slots`` tasks at a time.

    ``on_settled(index, problem)`` is called in this thread as each batch ends: ``problem``
    is None when every stage completed, else the first stage that failed (the later stages
    are not run for that batch). ``on_progress`` gets the share of stage work done.
    """
    if slots < 1:
        raise ValueError("stream_batches needs at least one slot")
    total = len(refs) * len(stage_tasks)
    # Ready tasks as (priority, batch, stage); heapq pops the smallest.
    ready: list[tuple[int, int, int]] = []
    next_new = 0  # batches are started lazily, so a later stage can overtake them
    running: dict[concurrent.futures.Future, tuple[int, int, PrefectFuture]] = {}
    finished = 0

    def priority(stage: int) -> int:
        return -stage if order == BatchOrder.STREAMING else stage

    def start_next() -> bool:
        nonlocal next_new
        if next_new < len(refs) and (not ready or priority(0) < ready[0][0]):
            batch, stage = next_new, 0
            next_new += 1
        elif ready:
            _, batch, stage = heapq.heappop(ready)
        else:
            return False
        future = stage_tasks[stage].submit(refs[batch], ctx)
        running[future.wrapped_future] = (batch, stage, future)
        return True

    while next_new < len(refs) or ready or running:
        while len(running) < slots and start_next():
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
                    heapq.heappush(ready, (priority(stage + 1), batch, stage + 1))
                else:
                    on_settled(batch, None)
            else:
                finished += len(stage_tasks) - stage  # the stages it will not run count as done
                on_settled(batch, _problem(stage_tasks[stage], future))
        on_progress(finished / max(1, total))
