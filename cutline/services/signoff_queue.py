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
