"""What the end of a shoot needs from its images, gathered one batch at a time.

A 20,000-image shoot must not hold 20,000 records in memory to write its ledger and
summary: each batch is folded in as it settles (counts, times, the few rows the summary
lists) and its ledger rows go to a local spool file, which is streamed into the ledger
in shoot order at the end.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from cutline.domain.items import ImageItem, JobLayout
from cutline.domain.manifest import is_manifest_row
from cutline.records.ledger import (
    LEDGER_COLUMNS,
    ReconciliationError,
    ledger_row,
    ledger_writer,
    write_ledger_rows,
)
from rules.engine import Lane

TABLE_ROWS = 5000  # rows of the UI's per-image table; the ledger always has every row


class ShootTally:
    """Counts, times and ledger rows of a shoot's images, added batch by batch."""

    def __init__(self, spool_root: Path | None = None) -> None:
        if spool_root is not None:
            spool_root.mkdir(parents=True, exist_ok=True)
        self._spool = Path(tempfile.mkdtemp(prefix="cutline-ledger-", dir=spool_root))
        self._parts: set[int] = set()
        self.sources: Counter[str] = Counter()
        self.lanes: Counter[str] = Counter()
        self.laneless: list[str] = []
        self.failed_without_reason: list[str] = []
        self.categories: dict[str, Counter[str]] = defaultdict(Counter)
        self.stage_seconds: Counter[str] = Counter()
        self.lane_seconds: Counter[str] = Counter()
        self.cpu_seconds: Counter[str] = Counter()
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.reviews: list[tuple[tuple[str, int, str], dict[str, str]]] = []
        self.table: list[tuple[int, dict[str, object]]] = []

    def __enter__(self) -> ShootTally:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the spooled rows."""
        shutil.rmtree(self._spool, ignore_errors=True)

    @property
    def total(self) -> int:
        """Images added so far."""
        return sum(self.sources.values())

    def add(self, part: int, items: Iterable[ImageItem]) -> None:
        """Fold in one batch (``part`` orders the batches in the ledger)."""
        if part in self._parts:
            raise ValueError(f"batch {part} was added twice")
        self._parts.add(part)
        rows = []
        for item in sorted(items, key=lambda i: i.index):
            self._count(item)
            rows.append(ledger_row(item))
        with (self._spool / f"{part:08d}.csv").open("w", newline="", encoding="utf-8") as fh:
            ledger_writer(fh).writerows(rows)

    def _count(self, item: ImageItem) -> None:
        self.sources[item.source] += 1
        lane = item.lane.value if item.lane else ""
        if item.lane not in (Lane.AUTO, Lane.REVIEW, Lane.FAILED):
            self.laneless.append(item.source)
        else:
            self.lanes[lane] += 1
        if item.lane == Lane.FAILED:
            if not item.error:
                self.failed_without_reason.append(item.source)
            self.failures.append((item.index, {"file": item.source_name, "reason": item.error}))
        if item.lane == Lane.REVIEW:
            self.reviews.append(
                (
                    (item.deadline or "9999", item.priority or 99, item.sku),
                    {
                        "file": item.source_name,
                        "sku": item.sku,
                        "category": item.category,
                        "deadline": item.deadline,
                        "queue": item.queue,
                        "reasons": item.reasons,
                        "review_run_id": item.review_run_id,
                    },
                )
            )
        self.categories[item.category or "(none)"][lane or "?"] += 1
        self.stage_seconds.update(item.seconds)
        self.lane_seconds[(item.lane or Lane.FAILED).value] += sum(item.seconds.values())
        self.cpu_seconds.update(item.cpu_seconds)
        if item.index < TABLE_ROWS:
            self.table.append(
                (
                    item.index,
                    {
                        "file": item.source_name,
                        "sku": item.sku,
                        "category": item.category,
                        "lane": lane,
                        "confidence": item.confidence,
                        "reasons": item.reasons,
                    },
                )
            )

    def check(self, inputs: Iterable[str]) -> Counter[str]:
        """Check inputs = auto + review + failed, each exactly once; return the lane counts.

        Raises ReconciliationError naming the files that are missing, duplicated or
        without a lane, because a silently lost image is the worst outcome for a studio.
        """
        expected = set(inputs)
        duplicated = sorted(s for s, n in self.sources.items() if n > 1)
        missing = sorted(expected - set(self.sources))
        unexpected = sorted(set(self.sources) - expected)
        problems = []
        for label, names in (
            ("missing from the ledger", missing),
            ("listed more than once", duplicated),
            ("not among the inputs", unexpected),
            ("without a lane", sorted(self.laneless)),
            ("failed without a reason", sorted(self.failed_without_reason)),
        ):
            if names:
                problems.append(f"{len(names)} {label}: {', '.join(names[:10])}")
        if problems:
            raise ReconciliationError(
                "Ledger does not reconcile with the inputs: " + "; ".join(problems)
            )
        return Counter({lane.value: self.lanes.get(lane.value, 0) for lane in Lane})

    def failure_rows(self) -> list[dict[str, str]]:
        """Failed images in shoot order."""
        return [row for _, row in sorted(self.failures, key=lambda pair: pair[0])]

    def review_rows(self) -> list[dict[str, str]]:
        """Review-lane images by deadline, queue priority, SKU (the retouchers' order)."""
        return [row for _, row in sorted(self.reviews, key=lambda pair: pair[0])]

    def table_rows(self) -> list[dict[str, object]]:
        """The first TABLE_ROWS images in shoot order, for the UI's table."""
        return [row for _, row in sorted(self.table, key=lambda pair: pair[0])]

    def versions(self) -> dict[str, set[tuple[str, str]]]:
        """Each input file's name in the shoot and the (content hash, SKU) pairs seen for it
        (manifest rows without a file are not files of the shoot)."""
        seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for row in self.ledger_rows():
            if not is_manifest_row(row["source"]):
                seen[row["source_name"]].add((row["sha256"], row["sku"]))
        return dict(seen)

    def ledger_rows(self) -> Iterator[dict[str, str]]:
        """Every ledger row in shoot order, read back from the spool."""
        for part in sorted(self._parts):
            with (self._spool / f"{part:08d}.csv").open(newline="", encoding="utf-8") as fh:
                yield from csv.DictReader(fh, fieldnames=LEDGER_COLUMNS)

    def write_ledger(self, layout: JobLayout) -> str:
        """Stream the ledger into the job folder; returns its location."""
        return write_ledger_rows(self.ledger_rows(), layout)


def reconcile(inputs: list[str], items: list[ImageItem]) -> Counter[str]:
    """Check inputs = auto + review + failed, each exactly once; return the lane counts
    (see `ShootTally.check`)."""
    with ShootTally() as tally:
        tally.add(0, items)
        return tally.check(inputs)
