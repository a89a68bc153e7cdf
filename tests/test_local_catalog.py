"""The local DAM catalog: idempotent registration, approval history, readable records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dam_adapters import ApprovalState, AssetSubmission
from dam_adapters.local_catalog import LocalCatalog


def _submission(tmp_path: Path, **changes) -> AssetSubmission:
    png = tmp_path / "a.png"
    png.write_bytes(b"png-bytes")
    base = dict(
        job_id="SS26-0142",
        sku="SKU-1",
        category="footwear",
        channels=["web"],
        source="/shoot/a.jpg",
        source_name="a.jpg",
        content_hash="ab" * 32,
        approval_state=ApprovalState.AUTO_APPROVED,
        approved_by="cutline-auto",
        renditions={"png": str(png)},
    )
    base.update(changes)
    return AssetSubmission(**base)


def test_registering_twice_updates_instead_of_duplicating(tmp_path: Path):
    catalog = LocalCatalog(tmp_path / "catalog")
    first = catalog.register(_submission(tmp_path))
    second = catalog.register(_submission(tmp_path, campaign="AW27"))
    assert first.dam_id == second.dam_id
    assert second.revision == 2 and second.created_at == first.created_at
    assert [r.campaign for r in catalog.list_job("SS26-0142")] == ["AW27"]
    assert len(list((tmp_path / "catalog" / "records").glob("*.json"))) == 1


def test_record_is_readable_json_with_files_in_the_catalog(tmp_path: Path):
    catalog = LocalCatalog(tmp_path / "catalog")
    record = catalog.register(_submission(tmp_path))
    data = json.loads((tmp_path / "catalog" / "records" / f"{record.dam_id}.json").read_text())
    assert data["job_id"] == "SS26-0142" and data["sku"] == "SKU-1" and data["channels"] == ["web"]
    stored = Path(data["renditions"]["png"])
    assert stored.parent == tmp_path / "catalog" / "files" / record.dam_id
    assert stored.read_bytes() == b"png-bytes"


def test_approval_changes_are_kept_in_history(tmp_path: Path):
    catalog = LocalCatalog(tmp_path / "catalog")
    record = catalog.register(_submission(tmp_path))
    updated = catalog.update_approval(
        record.dam_id, ApprovalState.REJECTED, by="ana", note="reshoot"
    )
    assert updated.approval_state == ApprovalState.REJECTED and updated.approved_by == "ana"
    assert [h["state"] for h in updated.history] == ["auto-approved", "rejected"]
    assert catalog.find(record.idempotency_key).approval_state == ApprovalState.REJECTED


def test_unknown_id_is_a_key_error(tmp_path: Path):
    with pytest.raises(KeyError):
        LocalCatalog(tmp_path / "catalog").get("cl-doesnotexist")
    with pytest.raises(KeyError):
        LocalCatalog(tmp_path / "catalog").get("../../etc/passwd")
