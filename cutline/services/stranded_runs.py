"""Runs whose process died: found by their missing heartbeats, and recovered.

Every Prefect flow-run process emits a ``prefect.flow-run.heartbeat`` event while it runs
(``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``; the stack's worker uses 30 s). A run that is
Running or Pending with no heartbeat for ``CUTLINE_STRANDED_AFTER_SECONDS`` lost its process
(killed, machine restarted) and would otherwise stay Running for ever. Every time compared is
the Prefect server's (when it received a heartbeat, when it set a state, its own "now"): the
machine running a flow may have a clock far off, and its live runs must not look silent.

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
_RERUN = "rerun the job (finished work is reused)"
# What happens next to a crashed run, by flow, when it is not simply "rerun the job".
_NEXT_STEP = {
    "process-batch": "the shoot starts this batch again for the workers still polling the "
    "pool (finished work is reused); if the shoot itself stopped, " + _RERUN,
}
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


# Events are looked up by the time their sender says they occurred, which is the clock of
# the machine running the flow: it may be hours off the server's. The look-up window is wide
# open and liveness is judged by when the server received each event.
_EVENTS_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
_LATEST_EVENTS = 10


def _last_heard(client: Any, run_id: str) -> datetime | None:
    """When the server last received a heartbeat of the run, by the server's own clock; None
    if it never did. (State changes need no look-up: their times are the server's.)"""
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventOrder,
        EventResourceFilter,
    )

    page = client.read_events(
        filter=EventFilter(
            occurred=EventOccurredFilter(
                since=_EVENTS_SINCE, until=datetime.now(UTC) + timedelta(days=3650)
            ),
            event=EventNameFilter(name=[HEARTBEAT_EVENT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
            order=EventOrder.DESC,
        ),
        # The newest few by the sender's clock: a clock stepped back mid-run (NTP) puts its
        # latest events below earlier ones, so the newest received is looked for among them.
        limit=_LATEST_EVENTS,
    )
    return max((event.received for event in page.events), default=None)


def _heartbeating(client: Any, run_ids: list[str], since: datetime) -> set[str]:
    """Ids of the runs whose heartbeat the server received since ``since``, a time by the
    server's clock."""
    alive: set[str] = set()
    for run_id in run_ids:
        heard = _last_heard(client, run_id)
        if heard is not None and heard >= since:
            alive.add(run_id)
    return alive


def _server_now(client: Any) -> datetime:
    """The API server's clock (its HTTP Date header): this process's own clock may be off
    (another machine, a test under faketime), and judging runs by it would take live runs
    for dead ones."""
    response = client.hello()  # any answer of the API server carries its Date header
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
                state = Crashed(message=f"{silent}; {_NEXT_STEP.get(flow, _RERUN)}")
                action = "crashed"
            client.set_flow_run_state(run.id, state, force=True)
            recovered.append(
                RecoveredRun(run_id=str(run.id), flow=flow, name=run.name, action=action)
            )
    return recovered
