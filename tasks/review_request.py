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
from prefect.input import read_flow_run_input

from cutline.base.naming import short_hash
from cutline.domain.items import ImageItem
from cutline.domain.manifest import KNOWN_COLUMNS
from cutline.services.review_links import PAGE_LINKS_SCHEMA_KEY, REVIEW_PAGE_KEY
from cutline.services.waiting_run import (
    WaitingRunRequest,
    create_waiting_run,
    create_waiting_runs,
    find_runs_by_key,
    form_missing,
    store_form,
    waiting_keyset,
)
from rules.engine import Lane
from tasks.context import TRANSIENT_ERRORS, ShootContext, StageWork, run_logger
from tasks.review import (
    decision_form,
    decision_key,
    emit_review_event,
    publish_page,
    review_run_name,
)

REVIEW_TAG = "cutline-review"
REVIEW_LANES = frozenset({Lane.REVIEW})

# REVIEW_PAGE_KEY: the run input holding the review page's links when the run made its own
# request (`tasks.run_inputs.remembered`: started by hand). A run opened waiting keeps them in
# its first form's schema under PAGE_LINKS_SCHEMA_KEY instead (one request fewer per review);
# either tells the flow that its request (event and page) was made. Housekeeping renews them
# there (`cutline.services.review_links`).

# What a retoucher reads in the form and the queue orders by (every manifest detail of the
# image, and how the rules routed it): a waiting review showing other values than the shoot's
# current ledger is replaced.
FORM_DETAILS = (
    *(column for column in KNOWN_COLUMNS if column != "filename"),
    "queue",
    "reasons",
    "rules",
)


def make_review_request(ctx: ShootContext) -> ReviewRequests:
    """The review stage's work over one batch: open the review of each review-lane image
    (idempotent per job, content and file), waiting for a retoucher by the time it returns."""
    return ReviewRequests(ctx)


class ReviewRequests(StageWork):
    """The review stage's work over one batch: `prepare` creates the batch's new review runs
    together, each call then finishes one image's review (page, form, event) or, for an image
    whose review exists already (a rerun), checks and reuses or replaces it."""

    def __init__(self, ctx: ShootContext) -> None:
        self.ctx = ctx
        self._opened: tuple[Any, UUID] | None = None
        self._created: dict[str, UUID] = {}  # runs `prepare` created, by review key

    def _client(self) -> tuple[Any, UUID]:
        # One API client and one deployment lookup per batch: a client of its own per image
        # cost more CPU (an SSL context, a CSRF token) than creating the waiting run itself.
        if self._opened is None:
            client = get_client(sync_client=True).__enter__()
            weakref.finalize(self, client.__exit__, None, None, None)
            self._opened = (client, review_deployment_id(client, self.ctx))
        return self._opened

    def prepare(self, items: list[ImageItem]) -> None:
        """Create the review runs of ``items`` that have none yet, in one request per hundred
        (creating a run costs the server about half the CPU that way). Images whose run
        exists, or that the server refused here, are opened one by one when their turn comes."""
        if not items:
            return
        keys = {review_key(item, self.ctx): item for item in items}
        try:
            client, deployment_id = self._client()
            existing = find_runs_by_key(client, deployment_id, list(keys))
            new = [(key, item) for key, item in keys.items() if key not in existing]
            requests = [review_run_request(item, self.ctx, key) for key, item in new]
            ids = create_waiting_runs(client, deployment_id, requests)
        except TRANSIENT_ERRORS:
            raise  # the server is unreachable: the batch is retried
        except Exception as exc:  # one by one, where each image's error is its own
            run_logger().warning("Opening the batch's reviews together failed: %s", exc)
            return
        for (key, _), run_id in zip(new, ids, strict=True):
            if run_id is not None:
                self._created[key] = run_id

    def __call__(self, item: ImageItem) -> None:
        client, deployment_id = self._client()
        key = review_key(item, self.ctx)
        created = self._created.pop(key, None)
        if created is not None:
            finish_request(client, created, item, self.ctx)
            item.review_run_id = str(created)
        else:
            item.review_run_id = str(reopen_review(client, deployment_id, item, self.ctx).id)
        item.review_state = item.review_state or "queued"


def review_key(item: ImageItem, ctx: ShootContext) -> str:
    """The idempotency key of an image's first review run in a job: one per input file and
    content."""
    return f"review:{ctx.job_id}:{item.sha256}:{short_hash(item.source_name)}"


def reopen_review(client: Any, deployment_id: UUID, item: ImageItem, ctx: ShootContext) -> FlowRun:
    """The image's review run, one at a time: created waiting, or the existing one reused.

    A previous run that ended without a decision (failed, crashed, cancelled) is replaced by a
    fresh one, and so is one still waiting whose form shows details the shoot no longer has (a
    rerun with a corrected manifest). A decided review is kept: reruns keep decisions."""
    key = review_key(item, ctx)
    for _ in range(50):
        run = open_review(client, deployment_id, item, ctx, key)
        state = run.state
        ended_undecided = state and state.is_final() and not state.is_completed()
        changed = changed_details(run.parameters.get("item") or {}, item)
        if not ended_undecided and not (changed and replace_waiting_review(run, changed)):
            break
        key = f"{key}:after-{str(run.id)[:8]}"
    return run


def review_run_request(item: ImageItem, ctx: ShootContext, key: str) -> WaitingRunRequest:
    """What an image's review run is created with: waiting at its first decision, the image
    and shoot as parameters, a name and tags the queue and the UI find it by."""
    return WaitingRunRequest(
        pause_key=decision_key(0),
        parameters={"item": item.model_dump(mode="json"), "ctx": ctx.model_dump(mode="json")},
        name=review_run_name(item, ctx.job_id),
        tags=[REVIEW_TAG, f"job:{ctx.job_id}", f"queue:{item.queue or 'standard'}"],
        idempotency_key=key,
    )


def open_review(
    client: Any, deployment_id: UUID, item: ImageItem, ctx: ShootContext, review_key: str
) -> FlowRun:
    """The review run of one image, created (or found, by ``review_key``) waiting for a
    retoucher with its form, page and event in place."""
    waiting = create_waiting_run(client, deployment_id, review_run_request(item, ctx, review_key))
    run = waiting.run
    # A request cut short after the run was made (a crash, a lost connection) left it
    # without its form: the next request finishes it.
    if waiting.created or form_missing(client, run):
        finish_request(client, run.id, item, ctx)
    return run


def finish_request(client: Any, run_id: UUID, item: ImageItem, ctx: ShootContext) -> None:
    """Complete a review run created waiting: its page, its Resume form (the page's links
    kept inside the form's schema for the flow to read on resume) and its `requested` event."""
    links = publish_page(item, ctx, str(run_id))
    store_form(
        client,
        run_id,
        waiting_keyset(decision_key(0)),
        decision_form(item, ctx, links),
        schema_extras={PAGE_LINKS_SCHEMA_KEY: links},
    )
    emit_review_event("requested", item, ctx, str(run_id))


def stored_page_links() -> dict[str, str] | None:
    """Inside a review run: the links of the page its request published (None when it was
    not opened by a shoot or a send-back, but started by hand)."""
    links = read_flow_run_input(REVIEW_PAGE_KEY)  # a run of its own, or opened before 2026-12
    if links is None:
        schema = read_flow_run_input(waiting_keyset(decision_key(0))["schema"])
        links = schema.get(PAGE_LINKS_SCHEMA_KEY) if isinstance(schema, dict) else None
    return links


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
