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

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterIdempotencyKey,
)
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy, State
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.input import Keyset, RunInput, keyset_from_paused_state
from prefect.states import Suspended, to_state_create
from pydantic.json import pydantic_encoder

from cutline.base.prefect_internals import run_input_description, run_input_schema


@dataclass(frozen=True)
class WaitingRun:
    """A run asked for (or found by its idempotency key) and whether it was made just now."""

    run: FlowRun
    created: bool


BULK_LIMIT = 100  # runs per bulk request: Prefect's server refuses more


@dataclass(frozen=True)
class WaitingRunRequest:
    """One run to create waiting: its pause key, parameters (plain JSON: dumps of typed
    models), name, tags and the key that makes asking twice return the same run."""

    pause_key: str
    parameters: dict[str, Any]
    name: str
    tags: list[str]
    idempotency_key: str


def waiting_keyset(pause_key: str) -> Keyset:
    """The run-input keys (schema, description, response) of a run waiting at ``pause_key``,
    as its Suspended state names them."""
    return keyset_from_paused_state(_suspended(pause_key))


def _suspended(pause_key: str) -> State:
    state = Suspended(timeout_seconds=None, pause_key=pause_key)
    state.state_details.run_input_keyset = keyset_from_paused_state(state)
    return state


def _create_body(request: WaitingRunRequest) -> dict[str, Any]:
    """The create-flow-run body of a run already Suspended at its pause key."""
    body = DeploymentFlowRunCreate(
        name=request.name,
        tags=request.tags,
        idempotency_key=request.idempotency_key,
        state=to_state_create(_suspended(request.pause_key)),
        empirical_policy=FlowRunPolicy(pause_keys={request.pause_key}),
        # The parameters are dumps of Cutline's own typed models, and the flow validates them
        # against its signature when it runs; the server's JSON-schema check of them was about
        # half of its CPU per review (some 50 ms). Runs started from the UI are still checked.
        enforce_parameter_schema=False,
    ).model_dump(mode="json", exclude_unset=True)
    # Plain JSON already: the request model would walk every value of it again (about a
    # millisecond per review in the shoot's worker).
    body["parameters"] = request.parameters
    return body


def create_waiting_run(
    client: Any,  # SyncPrefectClient
    deployment_id: UUID,
    request: WaitingRunRequest,
) -> WaitingRun:
    """Create a run of the deployment already Suspended at the request's pause key (the
    existing run when its idempotency key was used before). Its form is stored separately
    (`store_form`), since what the form shows may need the run's id."""
    response = client.request(
        "POST",
        "/deployments/{id}/create_flow_run",
        path_params={"id": deployment_id},
        json=_create_body(request),
    )
    response.raise_for_status()
    return WaitingRun(FlowRun.model_validate(response.json()), response.status_code == 201)


def create_waiting_runs(
    client: Any, deployment_id: UUID, requests: Sequence[WaitingRunRequest]
) -> list[UUID | None]:
    """Create many waiting runs of one deployment, a request per hundred rather than one each
    (a shoot opens thousands of reviews; per run, the single requests cost the server about
    twice the CPU). Returns each run's id in order, or None for a run the server refused, and
    for every run when the server has no bulk endpoint (Prefect before 3.9): the caller
    creates those one by one, with the error that says why.

    Asking again with a used idempotency key returns that run's id as if created: look up
    existing runs first (`find_runs_by_key`) where that matters."""
    ids: list[UUID | None] = []
    for start in range(0, len(requests), BULK_LIMIT):
        chunk = requests[start : start + BULK_LIMIT]
        try:
            response = client.request(
                "POST",
                "/deployments/{id}/create_flow_run/bulk",
                path_params={"id": deployment_id},
                json=[_create_body(request) for request in chunk],
            )
        except PrefectHTTPStatusError as exc:
            # An older server (no such endpoint), or no such deployment: one by one, each
            # request then fails or succeeds on its own, saying why.
            if exc.response.status_code in (404, 405):
                return ids + [None] * (len(requests) - len(ids))
            raise
        results = response.json()["results"]
        ids += [
            UUID(result["flow_run_id"]) if result.get("status") == "CREATED" else None
            for result in results
        ]
    return ids


def find_runs_by_key(
    client: Any, deployment_id: UUID, idempotency_keys: Sequence[str]
) -> dict[str, FlowRun]:
    """The deployment's runs made with any of ``idempotency_keys``, by key."""
    found: dict[str, FlowRun] = {}
    for start in range(0, len(idempotency_keys), BULK_LIMIT):
        chunk = list(idempotency_keys[start : start + BULK_LIMIT])
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=chunk)),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            limit=len(chunk),
        )
        found.update({run.idempotency_key: run for run in runs if run.idempotency_key})
    return found


def store_form(
    client: Any,
    run_id: UUID,
    keyset: Keyset,
    form: type[RunInput],
    schema_extras: dict[str, Any] | None = None,
) -> None:
    """Store the Resume form of a waiting run (its schema and markdown, under the run's
    ``keyset``: see `waiting_keyset`), with any values the flow reads back when it runs as
    ``schema_extras``: `x-` keys inside the schema, which forms ignore (one request fewer than
    a run input of their own).

    A value already stored (a request cut short and repeated, or made twice at once) is left
    as it is."""
    values: dict[str, Any] = {}
    description = run_input_description(form)
    if description:
        values[keyset["description"]] = description
    # The schema last: once it is stored the form is whole (`form_missing` looks for it).
    values[keyset["schema"]] = {**form_schema(form), **(schema_extras or {})}
    for key, value in values.items():
        try:
            client.create_flow_run_input(
                run_id, key, orjson.dumps(value, default=pydantic_encoder).decode()
            )
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 409:  # 409: stored already
                raise


def form_schema(form: type[RunInput]) -> dict[str, Any]:
    """The JSON schema the Resume form is drawn from, as `suspend_flow_run` stores it. A form
    that only adds its markdown to a base form (`RunInput.with_initial_data` with no starting
    values: every first request of a review) has the base's schema, made once per process."""
    base = form.__base__
    if (
        isinstance(base, type)
        and issubclass(base, RunInput)
        and base.__name__ == form.__name__
        and form.model_fields.keys() == base.model_fields.keys()
        and all(form.model_fields[n].default == f.default for n, f in base.model_fields.items())
    ):
        return _schema_of(base)
    return _schema_of.__wrapped__(form)


@functools.lru_cache(maxsize=16)
def _schema_of(form: type[RunInput]) -> dict[str, Any]:
    return run_input_schema(form)


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
