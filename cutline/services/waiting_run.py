"""Flow runs created already waiting for a person, without starting a process to get there.

A run that only suspends to ask for input costs a whole Python process when a runner executes
it (Prefect and Cutline imported each time: seconds of CPU). Here the run is created directly
in the Suspended state its flow would reach, with its Resume form (schema and description)
stored as the flow's own `suspend_flow_run` stores it, and the pause key recorded as fired. The
UI shows it and resumes it like any suspended run; a runner executes it only after the resume,
and the flow's `suspend_flow_run(key=pause_key)` then returns the person's answer instead of
suspending again (Prefect rejects a pause key that already fired).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.input import RunInput, keyset_from_paused_state
from prefect.states import Suspended, to_state_create
from pydantic.json import pydantic_encoder


@dataclass(frozen=True)
class WaitingRun:
    """A run asked for (or found by its idempotency key) and whether it was made just now."""

    run: FlowRun
    created: bool


def create_waiting_run(
    client: Any,  # SyncPrefectClient
    deployment_id: UUID,
    *,
    pause_key: str,
    parameters: dict[str, Any],
    name: str,
    tags: list[str],
    idempotency_key: str,
) -> WaitingRun:
    """Create a run of the deployment already Suspended at ``pause_key`` (the existing run when
    ``idempotency_key`` was used before). Its form is stored separately (`store_form`), since
    what the form shows may need the run's id."""
    state = Suspended(timeout_seconds=None, pause_key=pause_key)
    state.state_details.run_input_keyset = keyset_from_paused_state(state)
    request = DeploymentFlowRunCreate(
        name=name,
        parameters=parameters,
        tags=tags,
        idempotency_key=idempotency_key,
        state=to_state_create(state),
        empirical_policy=FlowRunPolicy(pause_keys={pause_key}),
        # The parameters are dumps of Cutline's own typed models, and the flow validates them
        # against its signature when it runs; the server's JSON-schema check of them was about
        # half of its CPU per review (some 50 ms). Runs started from the UI are still checked.
        enforce_parameter_schema=False,
    )
    response = client.request(
        "POST",
        "/deployments/{id}/create_flow_run",
        path_params={"id": deployment_id},
        json=request.model_dump(mode="json", exclude_unset=True),
    )
    response.raise_for_status()
    return WaitingRun(FlowRun.model_validate(response.json()), response.status_code == 201)


def store_form(
    client: Any,
    run: FlowRun,
    form: type[RunInput],
    remembered: dict[str, Any] | None = None,
) -> None:
    """Store the Resume form of a waiting run (its schema and markdown, under the keys its
    suspended state names) and any values the flow reads back when it runs (``remembered``,
    as `tasks.run_inputs.remembered` keeps them)."""
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    keyset = keyset_from_paused_state(run.state)
    values: dict[str, Any] = dict(remembered or {})
    values[keyset["schema"]] = create_v2_schema(form.__name__, model_base=form)
    if isinstance(form._description, str) and form._description:
        values[keyset["description"]] = form._description
    for key, value in values.items():
        client.create_flow_run_input(
            run.id, key, orjson.dumps(value, default=pydantic_encoder).decode()
        )


def form_missing(client: Any, run: FlowRun) -> bool:
    """True when a waiting run has no Resume form stored: a request that stopped between
    creating the run and storing its form (the run cannot be resumed until it is stored)."""
    if not (run.state and run.state.is_paused() and run.state.state_details.run_input_keyset):
        return False
    try:
        client.read_flow_run_input(run.id, run.state.state_details.run_input_keyset["schema"])
    except (ObjectNotFound, PrefectHTTPStatusError) as exc:
        status = getattr(getattr(exc, "response", None), "status_code", 404)
        if status == 404:
            return True
        raise
    return False
