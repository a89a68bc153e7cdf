"""`cutline status JOB`: where a shoot run stands, from the Prefect API."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel

from cutline.records.summary import artifact_key, parse_progress_description
from tasks.stages import STAGE_TASK_NAMES


class StageProgress(BaseModel):
    """Batches of one stage by state."""

    stage: str
    completed: int
    running: int
    failed: int
    waiting: int
    images_waiting: int


class ShootStatus(BaseModel):
    """A shoot run's state, progress and queue depth per stage."""

    job_id: str
    run_id: str
    state: str
    progress: float | None
    images: int | None
    batches: int | None
    stages: list[StageProgress]


def _batch_run_ids(client: Any, job_id: str, shoot_run_id: str) -> list[Any]:
    """The process-batch runs a shoot run started when its batches ran on workers
    (CUTLINE_DISTRIBUTE_BATCHES): their task runs are the shoot's stages. Only each batch's
    latest run counts, so a batch started again after its worker died is counted once."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
    )

    prefix = f"batch:{shoot_run_id}:"  # the idempotency key the shoot gives each batch run
    latest: dict[str, Any] = {}
    offset = 0
    while True:
        page = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["process-batch"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job_id}"])),
            limit=200,
            offset=offset,
        )
        for batch_run in page:
            key = batch_run.idempotency_key or ""
            if not key.startswith(prefix):
                continue  # a batch of another run of the job
            index = key.removeprefix(prefix).split(":", 1)[0]
            if index not in latest or batch_run.created > latest[index].created:
                latest[index] = batch_run
        offset += len(page)
        if len(page) < 200:
            return [batch_run.id for batch_run in latest.values()]


def parent_task_runs(task_run: Any) -> set[Any]:
    """The task runs ``task_run`` ran inside (a stage's: its batch's background task run)."""
    return {parent.id for parent in task_run.task_inputs.get("__parents__", [])}


def given_up_batch_attempts(task_runs: list[Any]) -> set[Any]:
    """Batch attempts on task workers (CUTLINE_BATCH_RUNNER=task-workers) that ended
    Crashed (their worker was lost) or Cancelled (superseded): the batch was sent again, so
    the stages they ran are not counted; the attempt that finished it is."""
    return {
        task_run.id
        for task_run in task_runs
        if task_run.name.startswith("process-batch-task")
        and task_run.state is not None
        and (task_run.state.is_crashed() or task_run.state.is_cancelled())
    }


def shoot_status(job_id: str) -> ShootStatus | None:
    """The latest process-shoot run named ``job_id``, or None when there is none."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterName,
    )
    from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["process-shoot"])),
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[job_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,  # a run not started yet has no start
            limit=1,
        )
        if not runs:
            return None
        run = runs[0]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"{artifact_key(job_id)}-progress"])
            ),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
            sort=ArtifactSort.UPDATED_DESC,
            limit=1,
        )
        stage_runs = [run.id, *_batch_run_ids(client, job_id, str(run.id))]
        task_runs = []
        while True:  # the API pages its answers: read them all
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=stage_runs)),
                limit=200,
                offset=len(task_runs),
            )
            task_runs.extend(page)
            if len(page) < 200:
                break
    progress: Any = artifacts[0].data if artifacts else None
    counts = parse_progress_description(artifacts[0].description if artifacts else "")
    images, batches, size = counts if counts else (None, None, None)
    by_stage: dict[str, Counter[str]] = {stage: Counter() for stage in STAGE_TASK_NAMES}
    given_up = given_up_batch_attempts(task_runs)
    for task_run in task_runs:
        if parent_task_runs(task_run) & given_up:
            continue  # a stage of a batch attempt lost with its task worker: run again
        stage = task_run.name.rsplit("-", 1)[0]
        if stage in by_stage and task_run.state:
            by_stage[stage][task_run.state.type.value] += 1
    stages = []
    for stage, states in by_stage.items():
        completed, running, failed = (
            states["COMPLETED"],
            states["RUNNING"],
            states["FAILED"] + states["CRASHED"],
        )
        waiting = max(0, (batches or 0) - completed - running - failed)
        stages.append(
            StageProgress(
                stage=stage,
                completed=completed,
                running=running,
                failed=failed,
                waiting=waiting,
                images_waiting=min(images or 0, waiting * (size or 0)),
            )
        )
    return ShootStatus(
        job_id=job_id,
        run_id=str(run.id),
        state=run.state.name if run.state else "",
        progress=float(progress) if progress is not None else None,
        images=images,
        batches=batches,
        stages=stages,
    )
