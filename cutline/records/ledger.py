"""The shoot ledger: one row per input file, and the check that every file is accounted for.

<job>/ledger.csv is a view, rebuilt whole: the shoot's own rows (its base, kept in
<job>/state/ledger-base.csv) with every review decision merged in, each decision a record of its
own in <job>/reviews/. Whoever changes an input (the shoot writing its rows, a review run landing
a decision, on any host) writes that input first and then rebuilds the view until it has
settled (`cutline.base.settled_view`), so no decision is lost when several land at once, on a
local disk or on S3, without any lock.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import BinaryIO

from cutline.base import storage
from cutline.base.settled_view import rebuild_until_settled
from cutline.domain.items import ImageItem, JobLayout
from cutline.records.review_records import (
    DecisionRecords,
    applied,
    decision_record,
)

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
    "model",  # the model whose mask the image has (the rules may choose one per category)
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
        "model": item.model,
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


# The base: the shoot's own rows, kept beside the ledger (<job>/state/ledger-base.csv) under a
# first line "cutline-ledger-base <generation>", each write a new generation. ledger.csv is a
# view of the base plus every decision record, rebuilt by whoever changes either.
BASE_MARK = "cutline-ledger-base"
BASE_INPUT = "base"  # the base's name among the view's inputs; decisions are "reviews/<id>"
NO_BASE = ""  # neither a base nor a ledger yet: the shoot writes both when it ends
LEGACY_BASE = "ledger.csv"  # a ledger written before bases were kept is its own base


def base_uri(layout: JobLayout) -> str:
    """The job's base rows: the ledger as the shoot wrote it, before review decisions."""
    return storage.join(layout.root, "state", "ledger-base.csv")


def _base_generation(layout: JobLayout) -> str:
    """The generation of the job's base (read from its first line), or LEGACY_BASE / NO_BASE."""
    loc = storage.locate(base_uri(layout))
    try:
        head = loc.fs.cat_file(loc.path, start=0, end=len(BASE_MARK) + 80)
    except FileNotFoundError:
        ledger = storage.locate(layout.ledger)
        ledger.fs.invalidate_cache(ledger.path)  # a listing cached before it was written
        return LEGACY_BASE if ledger.fs.exists(ledger.path) else NO_BASE
    return _generation(head.decode("utf-8", "replace").split(LEDGER_LINE_END, 1)[0], loc.uri())


def _generation(first_line: str, uri: str) -> str:
    mark, _, generation = first_line.strip().partition(" ")
    if mark != BASE_MARK or not generation:
        raise ValueError(
            f"{uri} does not start with '{BASE_MARK} <generation>': it was not written by "
            "Cutline. Rerun the job, which writes it again."
        )
    return generation


def _open_for_reading(uri: str) -> BinaryIO:
    loc = storage.locate(uri)
    if loc.is_local:
        return open(loc.path, "rb")
    loc.fs.invalidate_cache(loc.path)  # a listed size from the cache would cut the read short
    return loc.fs.open(loc.path, "rb")


def _open_base(layout: JobLayout) -> tuple[BinaryIO | None, bool]:
    """The base opened for reading, or a legacy ledger standing in for it (then True)."""
    for uri, legacy in ((base_uri(layout), False), (layout.ledger, True)):
        try:
            return _open_for_reading(uri), legacy
        except FileNotFoundError:
            continue
    return None, False


@contextlib.contextmanager
def _base_rows(layout: JobLayout) -> Iterator[tuple[str, Iterator[dict[str, str]]]]:
    """The base's generation and its rows, streamed (a legacy ledger stands in for a missing
    base; with neither, NO_BASE and no rows)."""
    raw, legacy = _open_base(layout)
    if raw is None:
        yield NO_BASE, iter(())
        return
    with raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        generation = LEGACY_BASE if legacy else _generation(text.readline(), base_uri(layout))
        yield (
            generation,
            (
                {key: from_spreadsheet_safe(value or "") for key, value in row.items()}
                for row in csv.DictReader(text)
            ),
        )


def _view_inputs(layout: JobLayout, decisions: DecisionRecords) -> dict[str, str]:
    """Everything ledger.csv is built from, each with its version."""
    inputs = {BASE_INPUT: _base_generation(layout)}
    inputs.update({f"reviews/{i}": v for i, v in decisions.versions().items()})
    return inputs


# Another host may rewrite the base while this one streams it (a rerun of the shoot writing its
# rows while a review decision lands): the read then starts over on the new base.
BASE_READ_ATTEMPTS = 8


def _write_view(layout: JobLayout, decisions: DecisionRecords, inputs: Mapping[str, str]) -> None:
    """Write ledger.csv whole from the base and the listed decision records, reading the base
    again when another host replaced it mid-read (nothing is written from a torn read)."""
    for attempt in range(BASE_READ_ATTEMPTS):
        try:
            _write_view_once(layout, decisions, inputs)
            return
        except OSError as exc:
            if not storage.replaced_while_read(exc) or attempt == BASE_READ_ATTEMPTS - 1:
                raise


def _write_view_once(
    layout: JobLayout, decisions: DecisionRecords, inputs: Mapping[str, str]
) -> None:
    with _base_rows(layout) as (generation, rows):
        if generation == NO_BASE:
            return  # no ledger yet; the shoot's first write lists this decision
        decided = decisions.read(
            {key.removeprefix("reviews/"): v for key, v in inputs.items() if key != BASE_INPUT}
        )
        with storage.open_for_writing(layout.ledger) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = ledger_writer(text)
            writer.writeheader()
            writer.writerows(
                _safe_rows(
                    applied(row, decided.get(row.get("image_id", "")), generation) for row in rows
                )
            )
            text.flush()
            text.detach()


def rebuild_ledger(layout: JobLayout) -> None:
    """Rebuild ledger.csv from the base rows and every decision record until a listing taken
    after the write shows nothing it missed: whichever hosts write at the same moment, the
    last write includes every decision recorded before it (`cutline.base.settled_view`).
    Decisions from several hosts need no lock, local or shared."""
    decisions = DecisionRecords(layout)
    rebuild_until_settled(
        lambda: _view_inputs(layout, decisions),
        lambda inputs: _write_view(layout, decisions, inputs),
        what=f"The ledger {storage.locate(layout.ledger).uri()}",
    )


def write_ledger_rows(rows: Iterable[dict[str, str]], layout: JobLayout) -> str:
    """Write the job's ledger CSV from rows already in shoot order, streaming, so a
    20,000-image ledger is never held in memory whole.

    The rows go to the job's base (a new generation) and ledger.csv is rebuilt from it with
    every review decision recorded by review runs (for the same file content) merged in, so a
    review decided while the shoot was still running, or before a rerun of it, is never
    forgotten. Each file is written whole (see `storage.open_for_writing`).
    """
    generation = uuid.uuid4().hex
    with storage.open_for_writing(base_uri(layout)) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        text.write(f"{BASE_MARK} {generation}{LEDGER_LINE_END}")
        writer = ledger_writer(text)
        writer.writeheader()
        writer.writerows(_safe_rows(rows))
        text.flush()
        text.detach()
    rebuild_ledger(layout)
    return storage.locate(layout.ledger).uri()


def write_ledger(items: Iterable[ImageItem], layout: JobLayout) -> str:
    """Write the job's ledger CSV atomically, rows in shoot order (see `write_ledger_rows`)."""
    ordered = sorted(items, key=lambda i: i.index)
    return write_ledger_rows((ledger_row(item) for item in ordered), layout)


def record_review_outcome(layout: JobLayout, item: ImageItem) -> None:
    """Keep a review's outcome as a record of its own in the job folder, then rebuild the
    ledger with it (when the shoot has written one: else the shoot merges it when it does).

    The record is the durable truth and is written first; the rebuild folds in every decision
    recorded so far, so two decisions landing at the same moment on two hosts both reach the
    ledger (the last rebuild includes both), on a local disk or an object store alike.
    """
    row = ledger_row(item)
    storage.write_bytes(
        layout.review_record(item.image_id), decision_record(row, _base_generation(layout))
    )
    rebuild_ledger(layout)


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
