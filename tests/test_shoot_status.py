"""`cutline status` counts each batch's stages once, even when a batch was run again after
its task worker was lost (the lost attempt's finished stages must not count twice)."""

from __future__ import annotations

from uuid import uuid4

from prefect.client.schemas.objects import TaskRun, TaskRunResult
from prefect.states import Cancelled, Completed, Crashed, Running

from cutline.ops.status import given_up_batch_attempts, parent_task_runs


def _run(name: str, state, parent: TaskRun | None = None) -> TaskRun:
    inputs = {"__parents__": [TaskRunResult(id=parent.id)]} if parent else {}
    return TaskRun(
        id=uuid4(), name=name, task_key=name, dynamic_key="0", state=state, task_inputs=inputs
    )


def test_stages_of_a_lost_or_superseded_batch_attempt_are_left_out():
    lost = _run("process-batch-task-0", Crashed(message="worker host-b-12 was lost"))
    superseded = _run("process-batch-task-1", Cancelled())
    again = _run("process-batch-task-2", Completed())
    runs = [
        lost,
        superseded,
        again,
        _run("ingest-batch-0", Completed(), lost),
        _run("cutout-batch-0", Running(), lost),  # left Running by the dead worker
        _run("ingest-batch-1", Completed(), again),
        _run("ingest-batch-2", Completed()),  # a shoot running its batches itself
    ]
    given_up = given_up_batch_attempts(runs)
    assert given_up == {lost.id, superseded.id}
    counted = [r.name for r in runs if not (parent_task_runs(r) & given_up)]
    assert counted == [
        "process-batch-task-0",
        "process-batch-task-1",
        "process-batch-task-2",
        "ingest-batch-1",
        "ingest-batch-2",
    ]
