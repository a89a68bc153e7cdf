"""ledger.csv as a view of the shoot's rows (its base) and the review decision records: which
decision shows on which row, and ledgers written before bases were kept."""

from __future__ import annotations

import json

from cutline.domain.items import JobLayout
from cutline.records.ledger import (
    base_uri,
    read_ledger,
    record_review_outcome,
    write_ledger,
)
from rules.engine import Lane
from tests.host_race import review_item


def _row(layout: JobLayout, image_id: str) -> dict[str, str]:
    return {r["image_id"]: r for r in read_ledger(layout.ledger)}[image_id]


def test_a_sent_back_auto_image_shows_its_decision_until_the_shoot_writes_its_rows_again(
    tmp_path,
):
    layout = JobLayout(str(tmp_path / "JOB-1"))
    auto = review_item(0, lane=Lane.AUTO, review_state="")
    write_ledger([auto], layout)
    # The producer sent it back; the retoucher decided (the reopened item is in the review lane).
    record_review_outcome(
        layout, auto.model_copy(update={"lane": Lane.REVIEW, "review_state": "rejected"})
    )
    assert _row(layout, "img-0")["review_state"] == "rejected"
    assert _row(layout, "img-0")["lane"] == "auto"  # the shoot's routing stays as it was
    write_ledger([auto], layout)  # a rerun routing it to auto again: the shoot's rows stand
    assert _row(layout, "img-0")["review_state"] == ""


def test_a_ledger_written_before_bases_were_kept_takes_new_decisions_and_becomes_a_view(tmp_path):
    layout = JobLayout(str(tmp_path / "JOB-1"))
    old_decision = review_item(0, review_state="approved", reviewed_by="Ana")
    write_ledger([old_decision, review_item(1)], layout)
    base = tmp_path / "JOB-1" / "state" / "ledger-base.csv"
    assert base_uri(layout) == str(base)
    base.unlink()  # as an earlier version left the job: ledger.csv alone, decisions in it
    record_review_outcome(layout, review_item(1, review_state="rejected", reviewed_by="Bo"))
    assert (_row(layout, "img-0")["reviewed_by"], _row(layout, "img-1")["reviewed_by"]) == (
        "Ana",
        "Bo",
    )
    assert not base.exists()  # only the shoot writes a base
    write_ledger([review_item(0), review_item(1)], layout)  # the next run of the shoot
    assert base.exists() and _row(layout, "img-1")["review_state"] == "rejected"


def test_each_decision_is_a_record_of_its_own_naming_the_file_and_the_base(tmp_path):
    layout = JobLayout(str(tmp_path / "JOB-1"))
    write_ledger([review_item(0)], layout)
    generation = (tmp_path / "JOB-1" / "state" / "ledger-base.csv").read_text().split()[1]
    record_review_outcome(layout, review_item(0, review_state="approved", reviewed_by="Ana"))
    record = json.loads((tmp_path / "JOB-1" / "reviews" / "img-0.json").read_text())
    assert record["source"] == "/shoot/0.jpg" and record["sha256"] == f"{0:064d}"
    assert record["base"] == generation and record["reviewed_by"] == "Ana"
    assert not (tmp_path / "JOB-1" / "ledger.csv.lock").exists()  # no host-local lock
