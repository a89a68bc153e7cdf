"""The contract every DAM adapter keeps; each adapter's tests inherit this class."""

from __future__ import annotations

from pathlib import Path

import pytest

from dam_adapters import ApprovalState, AssetSubmission, DamAdapter, idempotency_key


class DamAdapterContract:
    """Subclasses provide an ``adapter`` fixture and a ``rendition_uri`` fixture."""

    @pytest.fixture
    def adapter(self) -> DamAdapter:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def rendition_uri(self, tmp_path: Path) -> str:
        """A rendition file the adapter can read (local by default)."""
        path = tmp_path / "cutout.png"
        path.write_bytes(b"\x89PNG-rendition-bytes")
        return str(path)

    def submission(self, rendition_uri: str, **changes) -> AssetSubmission:
        base = dict(
            job_id="SS26-0142",
            sku="SKU-100",
            category="footwear",
            campaign="SS27",
            channels=["web", "marketplace"],
            source="/shoot/SKU-100_front.jpg",
            source_name="SKU-100_front.jpg",
            content_hash="a1" * 32,
            approval_state=ApprovalState.AUTO_APPROVED,
            approved_by="cutline-auto",
            confidence=0.93,
            reasons="Confidence 0.93 at or above 0.72",
            renditions={"png": rendition_uri},
        )
        base.update(changes)
        return AssetSubmission(**base)

    def test_register_returns_a_record_with_the_metadata(self, adapter, rendition_uri):
        record = adapter.register(self.submission(rendition_uri))
        assert record.dam_id
        assert (
            record.job_id == "SS26-0142"
            and record.sku == "SKU-100"
            and record.category == "footwear"
        )
        assert record.channels == ["web", "marketplace"]
        assert record.approval_state == ApprovalState.AUTO_APPROVED
        assert record.content_hash == "a1" * 32
        assert record.idempotency_key == idempotency_key(
            "SS26-0142", "SKU-100", "SKU-100_front.jpg", "a1" * 32
        )
        assert set(record.renditions) == {"png"}
        assert adapter.get(record.dam_id) == record

    def test_registering_the_same_image_again_updates_never_duplicates(
        self, adapter, rendition_uri
    ):
        first = adapter.register(self.submission(rendition_uri))
        second = adapter.register(self.submission(rendition_uri, category="homeware"))
        assert second.dam_id == first.dam_id
        assert second.revision == first.revision + 1
        assert [r.category for r in adapter.list_job("SS26-0142")] == ["homeware"]

    def test_identical_bytes_under_two_skus_are_two_assets(self, adapter, rendition_uri):
        # The same product shot filed twice (two colourways shot once, a duplicated file):
        # each SKU must reach the DAM.
        one = adapter.register(self.submission(rendition_uri))
        two = adapter.register(
            self.submission(rendition_uri, sku="SKU-200", source_name="SKU-200_front.jpg")
        )
        assert one.dam_id != two.dam_id and one.content_hash == two.content_hash
        assert sorted(r.sku for r in adapter.list_job("SS26-0142")) == ["SKU-100", "SKU-200"]

    def test_registering_the_identical_image_again_changes_nothing(self, adapter, rendition_uri):
        first = adapter.register(self.submission(rendition_uri))
        again = adapter.register(self.submission(rendition_uri))
        assert again.dam_id == first.dam_id
        assert again.revision == first.revision and again.updated_at == first.updated_at
        assert adapter.get(first.dam_id).revision == first.revision

    def test_find_by_idempotency_key(self, adapter, rendition_uri):
        submission = self.submission(rendition_uri)
        assert adapter.find(submission.key) is None
        record = adapter.register(submission)
        assert adapter.find(submission.key).dam_id == record.dam_id
        assert adapter.find("SS26-0142:" + "ff" * 32) is None

    def test_update_approval_records_who_and_keeps_history(self, adapter, rendition_uri):
        record = adapter.register(self.submission(rendition_uri))
        updated = adapter.update_approval(
            record.dam_id, ApprovalState.REJECTED, by="Ana", note="reshoot"
        )
        assert updated.approval_state == ApprovalState.REJECTED
        assert updated.approved_by == "Ana" and updated.note == "reshoot"
        assert [h["state"] for h in updated.history] == ["auto-approved", "rejected"]
        assert adapter.get(record.dam_id).approval_state == ApprovalState.REJECTED

    def test_list_job_is_ordered_and_limited_to_the_job(self, adapter, rendition_uri):
        for sku, digest in (("SKU-B", "b2"), ("SKU-A", "a2")):
            adapter.register(self.submission(rendition_uri, sku=sku, content_hash=digest * 32))
        adapter.register(self.submission(rendition_uri, job_id="OTHER-1", content_hash="c3" * 32))
        assert [r.sku for r in adapter.list_job("SS26-0142")] == ["SKU-A", "SKU-B"]
        assert [r.job_id for r in adapter.list_job("OTHER-1")] == ["OTHER-1"]
        assert adapter.list_job("NOPE-1") == []

    def test_unknown_id_is_a_key_error(self, adapter):
        with pytest.raises(KeyError):
            adapter.get("cl-00000000000000000000")
