"""Fresh links for reviews that wait longer than a presigned link lives.

A review of a job folder in a bucket links its page, preview and files by presigned URLs
(`cutline.services.review_page`), which S3 refuses to sign for longer than seven days. A
review may wait longer than that (a retoucher on holiday, a shoot parked for the client), and
its Resume form must not end up full of dead links. So the stack's housekeeping (and
`cutline review escalate`) looks at every waiting review of a bucket job and, when its links
expire within ``RENEW_BEFORE`` (or within half their lifetime, for short ones), publishes its
page again with new presigned URLs and writes them into the waiting form: the markdown the
UI shows above Resume, and the links the review reads back when it asks again after a
refused answer. The host doing it signs with its own S3 key, as the shoot's host did. Links
revoked (`cutline signoff link --revoke` deletes the pages) are not brought back.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from cutline.base import storage
from cutline.base.settings import CutlineSettings
from cutline.domain.items import ImageItem
from cutline.services.object_share import is_object_store, review_folder
from cutline.services.review_page import publish_review_page
from cutline.services.waiting_run import waiting_keyset

logger = logging.getLogger("cutline.review-links")

# Where a review's page links are kept: inside the first form's schema (`x-` keys are
# ignored by forms; a review opened by a shoot), or a run input of their own (a review run
# started by hand, which published its page itself).
PAGE_LINKS_SCHEMA_KEY = "x-cutline-review-page"
REVIEW_PAGE_KEY = "review-page"
FIRST_PAUSE_KEY = "decision-0"  # `tasks.review.decision_key(0)`
RENEW_BEFORE = timedelta(days=2)


@dataclass(frozen=True)
class StoredLinks:
    """A waiting review's page links and the run input they were read from."""

    links: dict[str, str]
    key: str  # the run input holding them
    in_schema: bool  # inside a form schema (under PAGE_LINKS_SCHEMA_KEY), else the value


def expires_at(links: dict[str, str]) -> datetime | None:
    """When a review's links stop working: ``expires_at`` (ISO time), else the start of the
    day ``expires`` names (links published before the time was kept); None when unknown."""
    if links.get("expires_at"):
        return datetime.fromisoformat(links["expires_at"])
    if links.get("expires"):
        return datetime.fromisoformat(links["expires"]).replace(tzinfo=UTC)
    return None


def renewal_due(links: dict[str, str], now: datetime, lifetime: timedelta) -> bool:
    """Whether links of ``lifetime`` must be published again now: they end within two days,
    or within half their lifetime when that is shorter."""
    ends = expires_at(links)
    if ends is None or not links.get("page"):
        return False
    return ends - now <= min(RENEW_BEFORE, lifetime / 2)


@contextlib.contextmanager
def _unless_missing():
    """Let an answer of 404 (no such run input) pass: the caller goes on without it."""
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    try:
        yield
    except ObjectNotFound:
        pass
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise


def _read_json(client: Any, run_id: UUID, key: str) -> Any:
    with _unless_missing():
        return json.loads(client.read_flow_run_input(run_id, key))
    return None


def _replace_input(client: Any, run_id: UUID, key: str, value: Any) -> None:
    """Store ``value`` under ``key`` in place of what is there (run inputs are write-once)."""
    with _unless_missing():
        client.delete_flow_run_input(run_id, key)
    client.create_flow_run_input(run_id, key, json.dumps(value))


def stored_links(client: Any, run_id: UUID) -> StoredLinks | None:
    """The page links a waiting review's form was made with (None: it has none)."""
    own = _read_json(client, run_id, REVIEW_PAGE_KEY)
    if isinstance(own, dict) and own.get("page"):
        return StoredLinks(own, REVIEW_PAGE_KEY, in_schema=False)
    key = waiting_keyset(FIRST_PAUSE_KEY)["schema"]
    schema = _read_json(client, run_id, key)
    links = schema.get(PAGE_LINKS_SCHEMA_KEY) if isinstance(schema, dict) else None
    if isinstance(links, dict) and links.get("page"):
        return StoredLinks(links, key, in_schema=True)
    return None


def swap_links(text: str, old: dict[str, str], new: dict[str, str]) -> str:
    """``text`` (a form's markdown) with each of the old links, and the date they expired,
    replaced by the new ones."""
    for name, url in old.items():
        if name in new and name not in ("expires", "expires_at") and url:
            text = text.replace(url, new[name])
    if old.get("expires") and new.get("expires"):
        text = text.replace(f"works until {old['expires']}", f"works until {new['expires']}")
    return text


def renew_review(
    client: Any, run: Any, settings: CutlineSettings, ui_url: str, now: datetime
) -> bool:
    """Publish a waiting review's page again and put the new links in its form, when its
    links are due (see `renewal_due`); whether it did."""
    ctx = run.parameters.get("ctx") or {}
    job_root = str(ctx.get("job_root") or "")
    if not is_object_store(job_root):
        return False  # a local job's links come from the share server and live their days
    if not storage.exists(storage.join(review_folder(job_root, str(run.id)), "index.html")):
        return False  # revoked (`cutline signoff link --revoke`): not brought back
    stored = stored_links(client, run.id)
    lifetime = timedelta(days=min(settings.review_link_days, 7))
    if stored is None or not renewal_due(stored.links, now, lifetime):
        return False
    item = ImageItem.model_validate(run.parameters["item"])
    new = publish_review_page(
        settings,
        item,
        str(ctx["job_id"]),
        str(run.id),
        f"{ui_url}/runs/flow-run/{run.id}",
        int(ctx["config"]["max_pixels"]),
        roots=[str(ctx["shoot"]), job_root],
    )
    if not new.get("page"):
        return False
    keyset = run.state.state_details.run_input_keyset or waiting_keyset(FIRST_PAUSE_KEY)
    shown = _read_json(client, run.id, keyset["description"])
    if isinstance(shown, str):
        _replace_input(client, run.id, keyset["description"], swap_links(shown, stored.links, new))
    if stored.in_schema:
        schema = _read_json(client, run.id, stored.key)
        _replace_input(client, run.id, stored.key, {**schema, PAGE_LINKS_SCHEMA_KEY: new})
    else:
        _replace_input(client, run.id, stored.key, new)
    return True


def renew_review_links(
    settings: CutlineSettings, ui_url: str, now: datetime | None = None, job: str | None = None
) -> list[str]:
    """Renew the links of every waiting review (of ``job``, or of every job) of a bucket job
    that are due; the ids of the runs renewed. A review that cannot be renewed now is logged
    and tried next round."""
    from prefect.client.orchestration import get_client

    from cutline.services.review_queue import waiting_runs

    now = now or datetime.now(UTC)
    renewed = []
    with get_client(sync_client=True) as client:
        for run in waiting_runs(job):
            if run.state is None or not run.state.is_paused():
                continue
            try:
                if renew_review(client, run, settings, ui_url, now):
                    renewed.append(str(run.id))
                    logger.info("Renewed the review links of %s", run.name)
            except Exception:
                logger.exception("Renewing the review links of %s failed", run.name)
    return renewed
