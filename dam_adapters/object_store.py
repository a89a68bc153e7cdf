"""A DAM for studios without one: JSON records kept in the shoot's own storage (local or S3),
next to the renditions they describe.

Layout under the catalog root (default <output_root>/_catalog):
  <job_id>/<dam_id>.json   one record per asset
  _ids/<dam_id>            the job a record belongs to, so an id alone finds its record
"""

from __future__ import annotations

import json
import posixpath

from cutline.base import storage
from dam_adapters.base import (
    AssetRecord,
    AssetSubmission,
    FileRecordAdapter,
    dam_id_for,
    next_record,
)


class ObjectStoreCatalog(FileRecordAdapter):
    """Assets as JSON records in object storage; renditions stay where the pipeline wrote them."""

    name = "object-store"

    def __init__(self, root: str) -> None:
        self.root = storage.locate(root).uri()
        super().__init__()

    def describe(self) -> str:
        """Where the records live."""
        return f"object-store catalog at {self.root}"

    def _record_uri(self, job_id: str, dam_id: str) -> str:
        return storage.join(self.root, job_id, f"{dam_id}.json")

    def _write(self, record: AssetRecord) -> None:
        data = json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False).encode(
            "utf-8"
        )
        # The id's pointer first: a write cut short between the two leaves no record (a retry
        # registers it), never a record that find() sees but get() cannot read.
        storage.write_bytes(
            storage.join(self.root, "_ids", record.dam_id), record.job_id.encode("utf-8")
        )
        storage.write_bytes(self._record_uri(record.job_id, record.dam_id), data)

    def _read(self, uri: str) -> AssetRecord | None:
        try:
            return AssetRecord.model_validate_json(storage.read_bytes(uri))
        except FileNotFoundError:
            return None

    def register(self, asset: AssetSubmission) -> AssetRecord:
        """Create or update the asset for this job + source hash; never a duplicate."""
        with self._lock:
            existing = self.find(asset.key)
            renditions = {kind: storage.locate(uri).uri() for kind, uri in asset.renditions.items()}
            record = next_record(existing, asset, renditions)
            if record is not existing:
                self._write(record)
            return record

    def find(self, key: str) -> AssetRecord | None:
        """The asset registered under this idempotency key, if any."""
        job_id = key.split(":", 1)[0]
        return self._read(self._record_uri(job_id, dam_id_for(key)))

    def get(self, dam_id: str) -> AssetRecord:
        """Read one record; KeyError when the id is unknown."""
        if not dam_id.startswith("cl-") or "/" in dam_id:
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}")
        try:
            job_id = storage.read_bytes(storage.join(self.root, "_ids", dam_id)).decode("utf-8")
        except FileNotFoundError:
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}") from None
        record = self._read(self._record_uri(job_id, dam_id))
        if record is None:
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}")
        return record

    def list_job(self, job_id: str) -> list[AssetRecord]:
        """All assets of a job, ordered by SKU then source name."""
        loc = storage.locate(storage.join(self.root, job_id))
        if not loc.fs.exists(loc.path):
            return []
        loc.fs.invalidate_cache(loc.path)
        records = []
        for path in loc.fs.ls(loc.path, detail=False):
            if posixpath.basename(path).endswith(".json"):
                record = self._read(loc.uri(path))
                if record is not None:
                    records.append(record)
        return sorted(records, key=lambda r: (r.sku, r.source_name))
