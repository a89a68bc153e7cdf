"""Shoots waiting for the producer's sign-off, as the terminal lists and resumes them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

SIGNOFF_FLOW = "signoff-shoot"


class SignOffEntry(BaseModel):
    """One shoot waiting for sign-off."""

    run_id: str
    job_id: str
    waiting_since: str
    state: str
    ui_url: str


def signoff_runs(job: str | None, states: list[str]) -> list[Any]:
    """Sign-off runs (of one job, or all) in the given state types, newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[SIGNOFF_FLOW])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
                tags=FlowRunFilterTags(all_=[f"job:{job}"]) if job else None,
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=200,
        )


def waiting_signoffs(ui_url: str, job: str | None = None) -> list[SignOffEntry]:
    """Sign-off runs waiting for a producer (newest first)."""
    return [
        SignOffEntry(
            run_id=str(run.id),
            job_id=run.parameters.get("job_id", ""),
            waiting_since=run.created.isoformat(timespec="seconds") if run.created else "",
            state=run.state.name if run.state else "",
            ui_url=f"{ui_url}/runs/flow-run/{run.id}",
        )
        for run in signoff_runs(job, ["PAUSED"])
    ]


def signoff_run_for(job: str, ui_url: str) -> SignOffEntry | None:
    """The sign-off run of ``job`` waiting for an answer, if any."""
    entries = waiting_signoffs(ui_url, job)
    return entries[0] if entries else None


def newer_signoff(job: str, run_id: str) -> str | None:
    """The id of a sign-off run of ``job`` requested after ``run_id`` and not ended without an
    answer, if any: a newer contact sheet makes this one's form obsolete."""
    live = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "COMPLETED"]
    runs = signoff_runs(job, live)
    mine = next((run for run in runs if str(run.id) == run_id), None)
    if mine is None or mine.created is None:
        return None
    newer = [run for run in runs if run.created and run.created > mine.created]
    return str(max(newer, key=lambda run: run.created).id) if newer else None
