"""The shoot's review queue on its run page, kept current.

A shoot's summary is written once, when the run ends; its reviews are decided for days after.
So the queue has an artifact of its own (key ``shoot-<job>-review-queue``): the shoot run
creates it, and every change to the queue (a review decided, an asset sent back or reopened)
rewrites it in place with what is waiting now, so the run page shows the current queue
whenever it is opened. Its rows are `cutline review list`'s, ordered by deadline.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cutline.base.markdown import inert, shortened
from cutline.base.settings import CutlineSettings
from cutline.records.summary import artifact_key, run_link
from cutline.services.review_queue import ReviewEntry, count_waiting_runs, list_reviews

LISTED = 200  # rows on the page; `cutline review list` has every one
# Runs waiting for a retoucher; one landing an answer (Running) has left the queue, even
# when two decisions land at the same moment and each rewrites the page.
WAITING = frozenset({"Suspended", "Paused"})


def queue_key(job_id: str) -> str:
    """The key of the job's review-queue artifact."""
    return f"{artifact_key(job_id)}-review-queue"


def queue_markdown(job_id: str, entries: list[ReviewEntry], ui_url: str, at: datetime) -> str:
    """The queue as the run page shows it: what waits, by deadline, and as of when."""
    lines = [
        f"# Review queue of shoot {inert(job_id)}",
        "",
        f"**{len(entries)} waiting** as of {at:%Y-%m-%d %H:%M:%S} UTC; rewritten whenever a "
        "review is decided or an asset is sent back, so it is current when you open it "
        "(`cutline review list` from a terminal).",
    ]
    if not entries:
        return "\n".join([*lines, "", "Nothing waits for a retoucher."])
    lines += [
        "",
        "| deadline | SKU | category | waiting | why | review run |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries[:LISTED]:
        deadline = (e.deadline or "-") + (" (overdue)" if e.overdue else "")
        lines.append(
            f"| {inert(deadline)} | {inert(shortened(e.sku, 32))} | {inert(e.category or '-')} "
            f"| {e.age_hours:.1f} h | {inert(shortened(e.reasons, 90))} "
            f"| {run_link(ui_url, e.run_id)} |"
        )
    if len(entries) > LISTED:
        lines += ["", f"... and {len(entries) - LISTED} more (`cutline review list`)."]
    return "\n".join(lines)


def queue_count_markdown(job_id: str, count: int, at: datetime) -> str:
    """The page of a queue longer than LISTED: how many wait now, and where to see them."""
    return "\n".join(
        [
            f"# Review queue of shoot {inert(job_id)}",
            "",
            f"**{count} waiting** as of {at:%Y-%m-%d %H:%M:%S} UTC; rewritten whenever a review "
            "is decided or an asset is sent back.",
            "",
            f"More than {LISTED} wait, too many to list at every decision: `cutline review list` "
            f"orders them all by deadline; in the UI, Runs filtered by the tag `job:{inert(job_id)}`.",
        ]
    )


def publish_review_queue(
    settings: CutlineSettings, job_id: str, ui_url: str, *, new: bool = False
) -> None:
    """Write the job's current queue: a new artifact of the running flow run when ``new``
    (the shoot run), else rewrite the newest ones of the key in place (a decision landing
    in a review run; the shoot's run page then shows it). Leaves ones kept by older
    shoot runs of the job current too (their pages show the same queue)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactUpdate
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    count = count_waiting_runs(job_id)
    if count > LISTED:  # listing reads every waiting run: not once per decision of a big lane
        markdown = queue_count_markdown(job_id, count, _now())
    else:
        waiting = [e for e in list_reviews(settings, ui_url, job_id) if e.state in WAITING]
        markdown = queue_markdown(job_id, waiting, ui_url, _now())
    if new:
        create_markdown_artifact(
            markdown=markdown,
            key=queue_key(job_id),
            description=f"Reviews of shoot {job_id} waiting now (kept current)",
        )
        return
    with get_client(sync_client=True) as client:
        kept = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[queue_key(job_id)])),
            sort=ArtifactSort.CREATED_DESC,
            limit=20,
        )
        for artifact in kept:
            client.update_artifact(artifact.id, ArtifactUpdate(data=markdown))


def _now() -> datetime:
    return datetime.now(UTC)


def refresh_review_queue(job_id: str, *, new: bool = False) -> str:
    """`publish_review_queue` with this process's settings and UI address; '' when done, else
    why not (a page that could not be rewritten never fails the decision that changed it:
    the next change, or `cutline review list`, shows the queue)."""
    from prefect.settings import PREFECT_UI_URL

    from cutline.base.settings import get_settings

    settings = get_settings()
    try:
        publish_review_queue(settings, job_id, PREFECT_UI_URL.value() or settings.ui_url, new=new)
    except Exception as exc:  # the API is busy or gone: the queue itself is unchanged
        return f"the review-queue page of {job_id} was not rewritten: {type(exc).__name__}: {exc}"
    return ""
