"""Decisions from several hosts (issue 28): the ledger and the object-store catalog stay exact
when writes land at the same instant on different hosts, in a local folder and on S3
(SeaweedFS), with no lock. Each host is a process of its own with its own HOME and data root
(`tests/host_race.py`); every round releases both hosts' steps at the same instant, and the
outcome is checked after each round."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutline.domain.items import JobLayout
from cutline.records.ledger import read_ledger, write_ledger
from dam_adapters import AssetSubmission
from dam_adapters.base import dam_id_for
from dam_adapters.object_store import ObjectStoreCatalog
from tests.host_race import Hosts, race_asset, review_item

ROUNDS = 4
# Rows of other images in the race ledgers: a rebuild takes long enough for two hosts' writes
# to overlap in every round, as a studio-sized ledger's do.
PADDING = 3000


def _padding(first: int) -> list:
    from rules.engine import Lane

    return [review_item(first + i, lane=Lane.AUTO) for i in range(PADDING)]


def _decisions_race(job_root: str, tmp_path: Path) -> None:
    """Host A decides image 2r and host B image 2r+1 in round r: both rows reach the ledger."""
    layout = JobLayout(job_root)
    write_ledger([review_item(i) for i in range(2 * ROUNDS)] + _padding(2 * ROUNDS), layout)
    steps = {
        name: [
            {
                "action": "decide",
                "job": job_root,
                "index": 2 * r + k,
                "by": f"Host {name}",
                "dam_id": f"cl-{2 * r + k}",
            }
            for r in range(ROUNDS)
        ]
        for k, name in enumerate("AB")
    }
    with Hosts(tmp_path, job_root, steps) as hosts:
        for r in range(ROUNDS):
            hosts.round(r)
            rows = {row["image_id"]: row for row in read_ledger(layout.ledger)}
            decided = {i for i, row in rows.items() if row["review_state"] == "approved"}
            expected = {f"img-{i}" for i in range(2 * r + 2)}
            assert decided == expected, f"round {r}: lost {sorted(expected - decided)}"
    assert len(rows) == 2 * ROUNDS + PADDING
    for index in range(2 * ROUNDS):
        row = rows[f"img-{index}"]
        assert row["reviewed_by"] == f"Host {'AB'[index % 2]}" and row["dam_id"] == f"cl-{index}"


def _rerun_race(job_root: str, tmp_path: Path) -> None:
    """Host A decides image r while host B (the shoot, rerun) rewrites every row: the ledger
    has B's new rows and every decision."""
    layout = JobLayout(job_root)
    write_ledger([review_item(i, campaign="first") for i in range(ROUNDS)], layout)
    steps = {
        "A": [
            {"action": "decide", "job": job_root, "index": r, "by": "Host A", "dam_id": f"cl-{r}"}
            for r in range(ROUNDS)
        ],
        "B": [
            {"action": "write_ledger", "job": job_root, "count": ROUNDS, "campaign": f"run-{r}"}
            for r in range(ROUNDS)
        ],
    }
    with Hosts(tmp_path, job_root, steps) as hosts:
        for r in range(ROUNDS):
            hosts.round(r)
            rows = {row["image_id"]: row for row in read_ledger(layout.ledger)}
            assert {row["campaign"] for row in rows.values()} == {f"run-{r}"}, f"round {r}"
            decided = {i for i, row in rows.items() if row["review_state"] == "approved"}
            expected = {f"img-{i}" for i in range(r + 1)}
            assert decided == expected, f"round {r}: lost {sorted(expected - decided)}"


def test_two_decisions_at_the_same_instant_on_two_hosts_both_reach_a_local_ledger(tmp_path):
    _decisions_race(str(tmp_path / "out" / "RACE-1"), tmp_path)


def test_a_decision_while_another_host_rewrites_the_shoot_rows_keeps_both_locally(tmp_path):
    _rerun_race(str(tmp_path / "out" / "RACE-2"), tmp_path)


@pytest.mark.slow
def test_two_decisions_at_the_same_instant_on_two_hosts_both_reach_a_ledger_on_s3(bucket, tmp_path):
    _decisions_race(f"s3://{bucket}/out/RACE-1", tmp_path)


@pytest.mark.slow
def test_a_decision_while_another_host_rewrites_the_shoot_rows_keeps_both_on_s3(bucket, tmp_path):
    _rerun_race(f"s3://{bucket}/out/RACE-2", tmp_path)


def _dam_id(job_id: str, name: str) -> str:
    return dam_id_for(AssetSubmission(**race_asset(job_id, name)).key)


def _catalog_race(catalog_root: str, tmp_path: Path) -> None:
    """Rounds of: two hosts registering different assets, then the same asset, then changing
    the approval of one asset, at the same instant."""
    job = "RACE-DAM"
    steps: dict[str, list[dict]] = {}
    for name, state in (("A", "signed-off"), ("B", "sent-back")):
        steps[name] = (
            [
                {
                    "action": "register",
                    "catalog": catalog_root,
                    "asset": race_asset(job, f"{name}{r}"),
                }
                for r in range(ROUNDS)
            ]
            + [
                {
                    "action": "register",
                    "catalog": catalog_root,
                    "asset": race_asset(job, f"same{r}"),
                }
                for r in range(ROUNDS)
            ]
            + [
                {
                    "action": "approve",
                    "catalog": catalog_root,
                    "dam_id": _dam_id(job, f"A{r}"),
                    "state": state,
                    "by": f"Host {name}",
                    "note": f"from host {name}",
                }
                for r in range(ROUNDS)
            ]
        )
    catalog = ObjectStoreCatalog(catalog_root)
    with Hosts(tmp_path, catalog_root, steps) as hosts:
        for r in range(ROUNDS):  # different assets: both registered
            hosts.round(r)
            names = {record.source_name for record in catalog.list_job(job)}
            expected = {f"{n}{i}.jpg" for n in "AB" for i in range(r + 1)}
            assert names == expected, f"round {r}: lost {sorted(expected - names)}"
        for r in range(ROUNDS):  # the same asset from both: one record, registered once
            hosts.round(ROUNDS + r)
            same = [x for x in catalog.list_job(job) if x.source_name == f"same{r}.jpg"]
            assert len(same) == 1, f"round {ROUNDS + r}: {len(same)} records of one asset"
            assert same[0].revision == 1 and len(same[0].history) == 1, same[0]
            assert catalog.get(same[0].dam_id) == same[0]
        for r in range(ROUNDS):  # two approval changes of one asset: both kept
            hosts.round(2 * ROUNDS + r)
            record = catalog.get(_dam_id(job, f"A{r}"))
            changes = sorted((h["state"], h["by"]) for h in record.history[1:])
            assert changes == [("sent-back", "Host B"), ("signed-off", "Host A")], (
                f"round {2 * ROUNDS + r}: history {record.history}"
            )
            assert record.revision == 3 and record.history[0]["state"] == "auto-approved"
            assert record.approval_state.value == record.history[-1]["state"]
    assert len(catalog.list_job(job)) == 3 * ROUNDS


def test_two_hosts_writing_one_local_object_store_catalog_at_once_lose_nothing(tmp_path):
    _catalog_race(str(tmp_path / "catalog"), tmp_path)


@pytest.mark.slow
def test_two_hosts_writing_one_object_store_catalog_on_s3_at_once_lose_nothing(bucket, tmp_path):
    _catalog_race(f"s3://{bucket}/out/_catalog", tmp_path)


# The worst interleaving, made to happen every time: another host lands a whole decision (or
# approval change) after this writer listed its inputs and before it writes the view. The
# writer's own view write is then stale; its listing after the write must catch that.


def _decision_inside_a_rebuild(job_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cutline.records import ledger
    from cutline.records.ledger import record_review_outcome

    layout = JobLayout(job_root)
    write_ledger([review_item(0), review_item(1)], layout)
    real, seen = ledger._write_view, []

    def other_host_lands_first(layout_, decisions, inputs):
        if not seen:
            seen.append(dict(inputs))
            other = review_item(1, review_state="approved", reviewed_by="Host B")
            record_review_outcome(layout, other)  # its own rebuild passes straight through
        return real(layout_, decisions, inputs)

    monkeypatch.setattr(ledger, "_write_view", other_host_lands_first)
    record_review_outcome(layout, review_item(0, review_state="approved", reviewed_by="Host A"))
    assert "reviews/img-1" not in seen[0]  # the interleaving happened
    rows = {row["image_id"]: row for row in read_ledger(layout.ledger)}
    assert (rows["img-0"]["reviewed_by"], rows["img-1"]["reviewed_by"]) == ("Host A", "Host B")


def _approval_inside_a_rebuild(catalog_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cutline.base import storage
    from dam_adapters import ApprovalState

    catalog = ObjectStoreCatalog(catalog_root)
    record = catalog.register(AssetSubmission(**race_asset("RACE-DAM", "A0")))
    real, seen = storage.write_bytes, []

    def other_host_lands_first(uri: str, data: bytes) -> str:
        if uri.endswith(f"/{record.dam_id}.json") and not seen:
            seen.append(uri)
            ObjectStoreCatalog(catalog_root).update_approval(
                record.dam_id, ApprovalState.SENT_BACK, by="Host B", note="from host B"
            )
        return real(uri, data)

    monkeypatch.setattr(storage, "write_bytes", other_host_lands_first)
    catalog.update_approval(record.dam_id, ApprovalState.SIGNED_OFF, by="Host A", note="A")
    assert seen  # the interleaving happened
    final = catalog.get(record.dam_id)
    assert sorted(h["by"] for h in final.history[1:]) == ["Host A", "Host B"], final.history
    assert final.revision == 3 and catalog.list_job("RACE-DAM") == [final]


def test_a_decision_landing_inside_another_hosts_rebuild_is_kept_locally(tmp_path, monkeypatch):
    _decision_inside_a_rebuild(str(tmp_path / "out" / "RACE-3"), monkeypatch)


def test_an_approval_landing_inside_another_hosts_rebuild_is_kept_locally(tmp_path, monkeypatch):
    _approval_inside_a_rebuild(str(tmp_path / "catalog"), monkeypatch)


@pytest.mark.slow
def test_a_decision_landing_inside_another_hosts_rebuild_is_kept_on_s3(bucket, monkeypatch):
    _decision_inside_a_rebuild(f"s3://{bucket}/out/RACE-3", monkeypatch)


@pytest.mark.slow
def test_an_approval_landing_inside_another_hosts_rebuild_is_kept_on_s3(bucket, monkeypatch):
    _approval_inside_a_rebuild(f"s3://{bucket}/out/_catalog", monkeypatch)


@pytest.mark.slow
def test_a_decision_reads_the_shoot_rows_again_when_another_host_replaces_them_mid_read(
    bucket, tmp_path, monkeypatch
):
    """S3 refuses the rest of an object rewritten after it was opened ("precondition failed"):
    the rebuild reopens the new rows instead of failing the decision (seen in CI, where a rerun
    rewrote the shoot's rows between a review's open and its first read)."""
    from cutline.records import ledger

    layout = JobLayout(f"s3://{bucket}/out/RACE-3")
    write_ledger([review_item(i, campaign="first") for i in range(4)] + _padding(4), layout)
    opened = ledger._open_for_reading
    replaced = []

    def open_then_rerun_elsewhere(uri: str):
        handle = opened(uri)
        if not replaced:  # the other host's rerun lands between this open and its read
            replaced.append(uri)
            write_ledger([review_item(i, campaign="rerun") for i in range(4)], layout)
        return handle

    monkeypatch.setattr(ledger, "_open_for_reading", open_then_rerun_elsewhere)
    decided = review_item(1, review_state="approved", reviewed_by="Host A", dam_id="cl-1")
    ledger.record_review_outcome(layout, decided)

    assert replaced, "the base was never opened"
    rows = {row["image_id"]: row for row in read_ledger(layout.ledger)}
    assert set(rows) == {f"img-{i}" for i in range(4)}
    assert {row["campaign"] for row in rows.values()} == {"rerun"}
    assert rows["img-1"]["review_state"] == "approved" and rows["img-1"]["dam_id"] == "cl-1"
