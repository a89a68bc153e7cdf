"""Runs whose process died: found by their missing heartbeats, and recovered.

Every Prefect flow-run process emits a ``prefect.flow-run.heartbeat`` event while it runs
(``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``; the stack's serve process uses 30 s). A run that is
Running or Pending with no heartbeat for ``CUTLINE_STRANDED_AFTER_SECONDS`` lost its process
(killed, machine restarted) and would otherwise stay Running for ever.

- A review or sign-off run is rescheduled: it runs again from the top and, because Prefect
  keeps the answer given to a suspended run (its pause key and input), it lands the answer
  the retoucher or producer already gave, or asks again if none had been given. Landing is
  idempotent (the DAM key, the renditions, the ledger row), so a decision half-landed when the
  process died is completed, not doubled.
- A shoot or batch run is marked Crashed with what to do: rerun the job (finished work is
  reused).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import BaseModel

RESCHEDULE = frozenset({"review-cutout", "signoff-shoot"})
CRASH = frozenset({"process-shoot", "process-batch"})


class RecoveredRun(BaseModel):
    """One stranded run and what was done about it."""

    run_id: str
    flow: str
    name: str
    action: str  # "rescheduled" or "crashed"


def _flow_names(client: Any, runs: list[Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for flow_id in {run.flow_id for run in runs}:
        names[str(flow_id)] = client.read_flow(flow_id).name
    return names


def _running_runs(client: Any, job_id: str | None) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    runs = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=sorted(RESCHEDULE | CRASH))),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["RUNNING", "PENDING"])),
        ),
        limit=200,
    )
    if job_id is None:
        return runs
    # Reviews, sign-offs and batches carry the job's tag; a shoot run is named after its job.
    return [run for run in runs if f"job:{job_id}" in (run.tags or []) or run.name == job_id]


def _heartbeating(client: Any, run_ids: list[str], since: datetime) -> set[str]:
    """Ids of the runs that sent a heartbeat (or any event) since ``since``."""
    from prefect.events.filters import EventFilter, EventOccurredFilter, EventResourceFilter

    page = client.read_events(
        filter=EventFilter(
            occurred=EventOccurredFilter(since=since, until=since + timedelta(days=3650)),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{r}" for r in run_ids]),
        ),
        limit=50,  # the API's page size limit
    )
    alive: set[str] = set()
    while True:
        for event in page.events:
            alive.add(event.resource.id.removeprefix("prefect.flow-run."))
        if not page.next_page or alive >= set(run_ids):
            return alive
        page = client.read_events_page(page.next_page)


def _server_now(client: Any) -> datetime:
    """The API server's clock (its HTTP Date header): this process's own clock may be off
    (another machine, a test under faketime), and judging runs by it would take live runs
    for dead ones."""
    response = client._client.get("/health")  # the sync client's httpx client
    stamp = response.headers.get("date")
    return parsedate_to_datetime(stamp) if stamp else datetime.now(UTC)


def stranded_runs(stale_after: float, job_id: str | None = None) -> list[Any]:
    """Running or Pending Cutline runs (of one job, or all) silent for ``stale_after`` s."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        since = _server_now(client) - timedelta(seconds=stale_after)
        runs = [
            run
            for run in _running_runs(client, job_id)
            if run.state and run.state.timestamp and run.state.timestamp < since
        ]
        if not runs:
            return []
        alive = _heartbeating(client, [str(run.id) for run in runs], since)
    return [run for run in runs if str(run.id) not in alive]


def recover_stranded_runs(stale_after: float, job_id: str | None = None) -> list[RecoveredRun]:
    """Reschedule stranded review and sign-off runs, mark stranded shoot and batch runs
    Crashed; what was done, per run."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed, Scheduled

    runs = stranded_runs(stale_after, job_id)
    if not runs:
        return []
    silent = f"its process stopped (no heartbeat for over {stale_after:.0f} s)"
    recovered = []
    with get_client(sync_client=True) as client:
        flows = _flow_names(client, runs)
        for run in runs:
            flow = flows[str(run.flow_id)]
            if flow in RESCHEDULE:
                state = Scheduled(
                    message=f"{silent}; run again: an answer already given is landed, "
                    "otherwise the form asks again"
                )
                action = "rescheduled"
            else:
                state = Crashed(message=f"{silent}; rerun the job (finished work is reused)")
                action = "crashed"
            client.set_flow_run_state(run.id, state, force=True)
            recovered.append(
                RecoveredRun(run_id=str(run.id), flow=flow, name=run.name, action=action)
            )
    return recovered
