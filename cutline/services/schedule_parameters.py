"""Schedules made in the Prefect UI run with the parameters ops typed.

The UI's schedule form sends parameter overrides entered as JSON in Prefect's dehydrated form,
``{"__prefect_kind": "json", "value": "{\"shoot\": ..., \"job_id\": ...}"}``. Prefect's server
hydrates that form when a run is made by hand (Custom run) but stores a schedule's
parameters as sent, and its scheduler copies them into every run it plans: each scheduled
shoot then fails before it starts, asking for `shoot` and `job_id` (PrefectHQ/prefect#18701,
still open for 3.9). So Cutline hydrates them itself: the embedded server as the schedule is
saved (`cutline.ops.schedule_requests`), and any server (Prefect's own too) in the stack's
housekeeping and at `cutline up` (`repair_schedules`), which also mends runs already planned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("cutline.schedules")

PREFECT_KIND = "__prefect_kind"


def _anywhere(value: Any, found: Callable[[Any], bool]) -> bool:
    """Whether ``found`` holds for ``value`` or anything nested in its dicts and lists."""
    if found(value):
        return True
    if isinstance(value, dict):
        return any(_anywhere(v, found) for v in value.values())
    if isinstance(value, list):
        return any(_anywhere(v, found) for v in value)
    return False


def is_dehydrated(value: Any) -> bool:
    """Whether ``value`` holds a dehydrated form anywhere (a dict with ``__prefect_kind``)."""
    return _anywhere(value, lambda node: isinstance(node, dict) and PREFECT_KIND in node)


def hydrated(parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` with every dehydrated form replaced by its value, as Prefect's server
    does for a Custom run (Prefect's own `hydrate`); unchanged when it has none or one cannot
    be read (the run then fails with Prefect's own message, not a guess of ours)."""
    from prefect.utilities.schema_tools.hydration import HydrationContext, Placeholder, hydrate

    if not is_dehydrated(parameters):
        return parameters
    result = hydrate(parameters, HydrationContext(raise_on_error=False))
    if not isinstance(result, dict) or _anywhere(result, lambda n: isinstance(n, Placeholder)):
        return parameters
    return result


def repair_schedules() -> list[str]:
    """Hydrate the parameters of every schedule of Cutline's deployments (tag ``cutline``; a
    shared server's other deployments are left alone), and of every run a schedule has
    planned but not started, that hold a dehydrated form; what was mended, for the log."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    mended = []
    with get_client(sync_client=True) as client:
        ours = DeploymentFilter(tags=DeploymentFilterTags(all_=["cutline"]))
        for deployment in client.read_deployments(deployment_filter=ours):
            for schedule in deployment.schedules:
                fixed = hydrated(schedule.parameters or {})
                if fixed != schedule.parameters:
                    client.update_deployment_schedule(deployment.id, schedule.id, parameters=fixed)
                    mended.append(f"schedule {schedule.id} of {deployment.name}")
            planned = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]),
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=["SCHEDULED"])  # type: ignore[list-item]
                    ),
                ),
                limit=200,
            )
            for run in planned:
                fixed = hydrated(run.parameters or {})
                if fixed != run.parameters:
                    client.update_flow_run(run.id, parameters=fixed)
                    mended.append(f"planned run {run.name} of {deployment.name}")
    for what in mended:
        logger.warning("Hydrated the UI's JSON parameters of %s (PrefectHQ/prefect#18701)", what)
    return mended
