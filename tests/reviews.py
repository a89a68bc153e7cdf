"""Helpers for review tests: wait for suspended runs, resume them as the UI does."""

from __future__ import annotations

from uuid import UUID

import orjson

from cutline.services.review_queue import ReviewEntry, list_reviews, resume_review, wait_for_outcome
from tests.waiting import wait_until


def wait_for_reviews(settings, job: str, count: int, timeout: float = 180.0) -> list[ReviewEntry]:
    """Wait until ``count`` reviews of ``job`` are waiting (suspended); return them in order."""

    def waiting() -> list[ReviewEntry] | None:
        entries = [
            e for e in list_reviews(settings, settings.ui_url, job) if e.state == "Suspended"
        ]
        return entries if len(entries) >= count else None

    return wait_until(waiting, f"{count} waiting reviews of {job}", timeout=timeout)


def ui_form(
    decision: str, retoucher: str = "Ana Retoucher", retouched_file: str = "", note: str = ""
) -> dict:
    """Exactly the JSON the Prefect UI's Resume form submits for ReviewDecision."""
    return {
        "decision": decision,
        "retouched_file": retouched_file,
        "retoucher": retoucher,
        "note": note,
    }


def decide(run_id: str, form: dict, timeout: float = 180.0):
    """Resume a review with a form and wait for it to land or ask again."""
    resume_review(run_id, form)
    return wait_for_outcome(run_id, timeout=timeout)


def form_description(run_id: str) -> str:
    """The markdown currently shown above the run's Resume form."""
    from prefect.client.orchestration import get_client
    from prefect.input import keyset_from_paused_state

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        keyset = keyset_from_paused_state(run.state)
        return orjson.loads(client.read_flow_run_input(UUID(run_id), keyset["description"]))


def form_defaults(run_id: str) -> dict:
    """The values the run's current Resume form starts with (its schema's defaults)."""
    from prefect.client.orchestration import get_client
    from prefect.input import keyset_from_paused_state

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        keyset = keyset_from_paused_state(run.state)
        schema = orjson.loads(client.read_flow_run_input(UUID(run_id), keyset["schema"]))
    return {
        name: field["default"] for name, field in schema["properties"].items() if "default" in field
    }
