"""The shoot ledger: one row per input file, and the check that every file is accounted for."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import posixpath
from collections.abc import Iterable, Iterator

from cutline.base import storage
from cutline.domain.items import ImageItem, JobLayout
from rules.engine import Lane

LEDGER_COLUMNS = [
    "source",
    "sku",
    "category",
    "lane",
    "confidence",
    "reasons",
    "mask",
    "refinement",
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
    "reused",
    "stage_seconds",
    "cpu_seconds",
]


# Rows end in CRLF (RFC 4180, what spreadsheets write): Python's csv writer quotes a value that
# holds any character of the line terminator, so with CRLF a bare carriage return in a cell (an
# Excel export's line break) is quoted too, and every cell reads back exactly as it was written.
# With a plain "\n" terminator a bare "\r" went out unquoted and split the row on reading.
LEDGER_LINE_END = "\r\n"


def ledger_writer(handle: io.TextIOBase) -> csv.DictWriter:
    """A CSV writer of ledger rows that round-trips any cell (see LEDGER_LINE_END)."""
    return csv.DictWriter(
        handle, fieldnames=LEDGER_COLUMNS, lineterminator=LEDGER_LINE_END, extrasaction="ignore"
    )


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
        "refinement": item.refinement,
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
        "reused": ";".join(item.reused),
        "stage_seconds": json.dumps(item.seconds, sort_keys=True) if item.seconds else "",
        "cpu_seconds": json.dumps(item.cpu_seconds, sort_keys=True) if item.cpu_seconds else "",
    }


REVIEW_FIELDS = (
    "png",
    "psd",
    "jpg",
    "dam_id",
    "review_state",
    "reviewed_by",
    "review_note",
    "review_run_id",
)


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP "CSV injection"): a manifest value or a reviewer's note must never run as one.
FORMULA_STARTS = frozenset("=+-@\t\r")


def spreadsheet_safe(value: str) -> str:
    """``value`` as a spreadsheet shows it but never evaluates it: prefixed with a single
    quote when it (after any quotes already there) starts like a formula."""
    return "'" + value if value.lstrip("'")[:1] in FORMULA_STARTS and value else value


def from_spreadsheet_safe(value: str) -> str:
    """The value `spreadsheet_safe` was given (exact round trip)."""
    return value[1:] if value.startswith("'") and value.lstrip("'")[:1] in FORMULA_STARTS else value


def _safe_rows(rows: Iterable[dict[str, str]]) -> Iterator[dict[str, str]]:
    for row in rows:
        yield {key: spreadsheet_safe(str(value)) for key, value in row.items()}


def _render(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = ledger_writer(buf)
    writer.writeheader()
    writer.writerows(_safe_rows(rows))
    return buf.getvalue().encode("utf-8")


def _decided_reviews(layout: JobLayout) -> set[str]:
    """Image ids with a review outcome record in the job folder."""
    loc = storage.locate(layout.reviews)
    if not loc.fs.exists(loc.path):
        return set()
    loc.fs.invalidate_cache(loc.path)
    return {
        posixpath.basename(p.replace(os.sep, "/")).removesuffix(".json")
        for p in loc.fs.ls(loc.path, detail=False)
    }


def _with_review_outcomes(
    rows: Iterable[dict[str, str]], layout: JobLayout
) -> Iterator[dict[str, str]]:
    """The rows with decided reviews (recorded by review runs, for the same file content)
    merged in."""
    decided = _decided_reviews(layout)
    for row in rows:
        if row.get("lane") == Lane.REVIEW.value and row.get("image_id") in decided:
            record = json.loads(storage.read_bytes(layout.review_record(row["image_id"])))
            if record.get("source") == row.get("source") and record.get("sha256") == row.get(
                "sha256"
            ):
                row = {**row, **{field: record.get(field, "") for field in REVIEW_FIELDS}}
        yield row


def write_ledger_rows(rows: Iterable[dict[str, str]], layout: JobLayout) -> str:
    """Write the job's ledger CSV atomically from rows already in shoot order, streaming,
    so a 20,000-image ledger is never held in memory whole.

    Review decisions recorded by review runs (for the same file content) are merged in,
    so a review decided while the shoot was still running, or before a rerun of it, is
    never forgotten.
    """
    with _ledger_lock(layout.ledger), storage.open_for_writing(layout.ledger) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = ledger_writer(text)
        writer.writeheader()
        writer.writerows(_safe_rows(_with_review_outcomes(rows, layout)))
        text.flush()
        text.detach()
    return storage.locate(layout.ledger).uri()


def write_ledger(items: Iterable[ImageItem], layout: JobLayout) -> str:
    """Write the job's ledger CSV atomically, rows in shoot order (see `write_ledger_rows`)."""
    ordered = sorted(items, key=lambda i: i.index)
    return write_ledger_rows((ledger_row(item) for item in ordered), layout)


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


def record_review_outcome(layout: JobLayout, item: ImageItem) -> None:
    """Keep a review's outcome beside the ledger and update the file's ledger row.

    The outcome file is the durable record; the ledger row is updated now when the
    shoot run has written the ledger already, else merged when it does.
    """
    row = ledger_row(item)
    with _ledger_lock(layout.ledger):
        outcome = {field: row[field] for field in REVIEW_FIELDS} | {
            "source": item.source,
            "sha256": item.sha256,
        }
        storage.write_bytes(
            layout.review_record(item.image_id), json.dumps(outcome, indent=2).encode("utf-8")
        )
        if not storage.exists(layout.ledger):
            return
        rows = read_ledger(layout.ledger)
        for index, existing in enumerate(rows):
            if existing.get("source") == item.source and existing.get("sha256") == item.sha256:
                rows[index] = {**existing, **{field: row[field] for field in REVIEW_FIELDS}}
        storage.write_bytes(layout.ledger, _render(rows))


def own_cutouts(layout: JobLayout) -> dict[tuple[str, str], str]:
    """The cutout PNG Cutline wrote for each (source name, content hash) of the job, as its
    ledger lists them; only files inside the job folder count."""
    if not storage.exists(layout.ledger):
        return {}
    root = storage.real_uri(layout.root).rstrip("/") + "/"
    return {
        (row["source_name"], row["sha256"]): row["png"]
        for row in read_ledger(layout.ledger)
        if row.get("png") and storage.real_uri(row["png"]).startswith(root)
    }


def read_ledger(uri: str) -> list[dict[str, str]]:
    """Read a ledger CSV back as dictionaries, values as they were before they were made
    spreadsheet-safe."""
    text = storage.read_bytes(uri).decode("utf-8")
    return [
        {key: from_spreadsheet_safe(value or "") for key, value in row.items()}
        for row in csv.DictReader(io.StringIO(text, newline=""))
    ]
