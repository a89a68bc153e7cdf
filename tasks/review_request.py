"""Asking for a review: one review-cutout run per doubtful image, created already waiting.

The run is created suspended, with its Resume form, its review page and its `requested`
event, by whoever asks (the shoot's review stage, a producer's send-back), so no Python process
starts until a retoucher answers (see `cutline.services.waiting_run`). The retoucher sees what
a run that suspended itself would show: the same name, tags, form and pictures.
"""

from __future__ import annotations

import weakref
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun

from cutline.base.naming import short_hash
from cutline.domain.items import ImageItem
from cutline.domain.manifest import KNOWN_COLUMNS
from cutline.services.waiting_run import create_waiting_run, form_missing, store_form
from rules.engine import Lane
from tasks.context import ImageWork, ShootContext
from tasks.review import (
    decision_form,
    decision_key,
    emit_review_event,
    publish_page,
    review_run_name,
)

REVIEW_TAG = "cutline-review"
REVIEW_LANES = frozenset({Lane.REVIEW})

# The run input holding the review page's links (`tasks.run_inputs.remembered`); stored
# with the form, it also tells the flow that its request (event and page) was made.
REVIEW_PAGE_KEY = "review-page"

# What a retoucher reads in the form and the queue orders by (every manifest detail of the
# image, and how the rules routed it): a waiting review showing other values than the shoot's
# current ledger is replaced.
FORM_DETAILS = (
    *(column for column in KNOWN_COLUMNS if column != "filename"),
    "queue",
    "reasons",
    "rules",
)


def make_review_request(ctx: ShootContext) -> ImageWork:
    """Per-image: open the review of a review-lane image (idempotent per job, content and
    file), waiting for a retoucher by the time this returns."""
    # One API client and one deployment lookup per batch: a client of its own per image
    # cost more CPU (an SSL context, a CSRF token) than creating the waiting run itself.
    opened: list[tuple[Any, UUID]] = []

    def request(item: ImageItem) -> None:
        if not opened:
            client = get_client(sync_client=True).__enter__()
            weakref.finalize(request, client.__exit__, None, None, None)
            opened.append((client, review_deployment_id(client, ctx)))
        client, deployment_id = opened[0]
        # One review per input file and content; a previous run that ended without a
        # decision (failed, crashed, cancelled) is replaced by a fresh one, and so is one
        # still waiting whose form shows details the shoot no longer has (a rerun with a
        # corrected manifest). A decided review is kept: reruns keep decisions.
        review_key = f"review:{ctx.job_id}:{item.sha256}:{short_hash(item.source_name)}"
        for _ in range(50):
            run = open_review(client, deployment_id, item, ctx, review_key)
            state = run.state
            ended_undecided = state and state.is_final() and not state.is_completed()
            changed = changed_details(run.parameters.get("item") or {}, item)
            if not ended_undecided and not (changed and replace_waiting_review(run, changed)):
                break
            review_key = f"{review_key}:after-{str(run.id)[:8]}"
        item.review_run_id = str(run.id)
        item.review_state = item.review_state or "queued"

    return request


def open_review(
    client: Any, deployment_id: UUID, item: ImageItem, ctx: ShootContext, review_key: str
) -> FlowRun:
    """The review run of one image, created (or found, by ``review_key``) waiting for a
    retoucher with its form, page and event in place."""
    waiting = create_waiting_run(
        client,
        deployment_id,
        pause_key=decision_key(0),
        parameters={"item": item.model_dump(mode="json"), "ctx": ctx.model_dump(mode="json")},
        name=review_run_name(item, ctx.job_id),
        tags=[REVIEW_TAG, f"job:{ctx.job_id}", f"queue:{item.queue or 'standard'}"],
        idempotency_key=review_key,
    )
    run = waiting.run
    # A request cut short after the run was made (a crash, a lost connection) left it
    # without its form: the next request finishes it.
    if waiting.created or form_missing(client, run):
        run_id = str(run.id)
        links = publish_page(item, ctx, run_id)
        store_form(
            client, run, decision_form(item, ctx, links), remembered={REVIEW_PAGE_KEY: links}
        )
        emit_review_event("requested", item, ctx, run_id)
    return run


def review_deployment_id(client: Any, ctx: ShootContext) -> UUID:
    """The id of the deployment the shoot's reviews are runs of."""
    return client.read_deployment_by_name(ctx.config.review_deployment).id


def changed_details(shown: dict, item: ImageItem) -> list[str]:
    """The form details (see FORM_DETAILS) a waiting review shows differently from ``item``."""
    current = item.model_dump(mode="json", include=set(FORM_DETAILS))
    return [name for name in FORM_DETAILS if shown.get(name) != current.get(name)]


def replace_waiting_review(run: Any, changed: list[str]) -> bool:
    """Cancel a review run that waits with out-of-date details so a fresh one is started;
    False (keep it) when it is not waiting: a decision may be landing right now."""
    from cutline.services.review_queue import cancel_run

    if not (run.state and (run.state.is_paused() or run.state.is_scheduled())):
        return False
    cancel_run(
        str(run.id),
        f"Superseded: the shoot's rerun changed {', '.join(changed)}; a new review shows them.",
    )
    return True
