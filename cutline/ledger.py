"""The shoot ledger: one row per input file, and the check that every file is accounted for."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator

from cutline import storage
from cutline.items import ImageItem
from rules.engine import Lane

LEDGER_COLUMNS = [
    "source",
    "sku",
    "category",
    "lane",
    "confidence",
    "reasons",
    "mask",
    "png",
    "psd",
    "jpg",
    "dam_id",
    "error",
    "source_name",
    "image_id",
    "sha256",
    "width",
    "height",
    "campaign",
    "channels",
    "deadline",
    "rules",
    "queue",
    "signals",
    "review_run_id",
    "review_state",
    "reviewed_by",
    "review_note",
]


class ReconciliationError(RuntimeError):
    """The ledger does not account for every input exactly once."""


def ledger_row(item: ImageItem) -> dict[str, str]:
    """The ledger's view of an item: lists joined with ';', signals as JSON."""
    return {
        "source": item.source,
        "sku": item.sku,
        "category": item.category,
        "lane": item.lane.value if item.lane else "",
        "confidence": "" if item.confidence is None else f"{item.confidence:.4f}",
        "reasons": item.reasons,
        "mask": item.mask,
        "png": item.png,
        "psd": item.psd,
        "jpg": ";".join(item.jpg),
        "dam_id": item.dam_id,
        "error": item.error,
        "source_name": item.source_name,
        "image_id": item.image_id,
        "sha256": item.sha256,
        "width": "" if item.width is None else str(item.width),
        "height": "" if item.height is None else str(item.height),
        "campaign": item.campaign,
        "channels": ";".join(item.channels),
        "deadline": item.deadline,
        "rules": ";".join(item.rules),
        "queue": item.queue,
        "signals": json.dumps(item.signals, sort_keys=True) if item.signals else "",
        "review_run_id": item.review_run_id,
        "review_state": item.review_state,
        "reviewed_by": item.reviewed_by,
        "review_note": item.review_note,
    }


_REVIEW_FIELDS = (
    "png",
    "psd",
    "jpg",
    "dam_id",
    "review_state",
    "reviewed_by",
    "review_note",
    "review_run_id",
)
DECIDED_REVIEW_STATES = frozenset({"approved", "replaced", "rejected"})


def _render(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=LEDGER_COLUMNS, lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_ledger(items: Iterable[ImageItem], uri: str) -> str:
    """Write the ledger CSV atomically, rows in shoot order.

    Review decisions already recorded in an existing ledger (by a review run, for the
    same file content) are kept, so rerunning a shoot never forgets what a retoucher
    decided.
    """
    with _ledger_lock(uri):
        decided = {}
        if storage.locate(uri).fs.exists(storage.locate(uri).path):
            decided = {
                (row["source"], row["sha256"]): row
                for row in read_ledger(uri)
                if row.get("review_state") in DECIDED_REVIEW_STATES
            }
        rows = []
        for item in sorted(items, key=lambda i: i.index):
            row = ledger_row(item)
            previous = decided.get((item.source, item.sha256))
            if previous is not None and item.lane == Lane.REVIEW:
                row.update({field: previous.get(field, "") for field in _REVIEW_FIELDS})
            rows.append(row)
        return storage.write_bytes(uri, _render(rows))


@contextlib.contextmanager
def _ledger_lock(uri: str) -> Iterator[None]:
    """Serialise read-modify-write of a local ledger across processes (review runs)."""
    loc = storage.locate(uri)
    if not loc.is_local:
        yield
        return
    os.makedirs(os.path.dirname(loc.path), exist_ok=True)
    with open(loc.path + ".lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class LedgerNotReadyError(RuntimeError):
    """The shoot run has not written the ledger (or this file's row) yet; retry later."""


def update_ledger_row(uri: str, item: ImageItem) -> str:
    """Replace one file's row (matched by source) after a review decided it."""
    with _ledger_lock(uri):
        loc = storage.locate(uri)
        if not loc.fs.exists(loc.path):
            raise LedgerNotReadyError(f"the ledger {uri} does not exist yet.")
        rows = read_ledger(uri)
        new = ledger_row(item)
        matched = False
        for index, row in enumerate(rows):
            if row.get("source") == item.source:
                rows[index] = new
                matched = True
        if not matched:
            raise LedgerNotReadyError(f"{item.source} is not in the ledger {uri} yet.")
        return storage.write_bytes(uri, _render(rows))


def read_ledger(uri: str) -> list[dict[str, str]]:
    """Read a ledger CSV back as dictionaries."""
    text = storage.read_bytes(uri).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def reconcile(inputs: list[str], items: list[ImageItem]) -> Counter[str]:
    """Check inputs = auto + review + failed, each exactly once; return the lane counts.

    Raises ReconciliationError naming the files that are missing, duplicated or
    without a lane, because a silently lost image is the worst outcome for a studio.
    """
    seen = Counter(item.source for item in items)
    duplicated = sorted(s for s, n in seen.items() if n > 1)
    missing = sorted(set(inputs) - set(seen))
    unexpected = sorted(set(seen) - set(inputs))
    laneless = sorted(
        i.source for i in items if i.lane not in (Lane.AUTO, Lane.REVIEW, Lane.FAILED)
    )
    failed_without_reason = sorted(i.source for i in items if i.lane == Lane.FAILED and not i.error)
    problems = []
    for label, names in (
        ("missing from the ledger", missing),
        ("listed more than once", duplicated),
        ("not among the inputs", unexpected),
        ("without a lane", laneless),
        ("failed without a reason", failed_without_reason),
    ):
        if names:
            problems.append(f"{len(names)} {label}: {', '.join(names[:10])}")
    if problems:
        raise ReconciliationError(
            "Ledger does not reconcile with the inputs: " + "; ".join(problems)
        )
    counts = Counter(item.lane.value for item in items if item.lane)
    return Counter({lane.value: counts.get(lane.value, 0) for lane in Lane})
