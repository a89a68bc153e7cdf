"""A DAM for studios without one: JSON records kept in the shoot's own storage (local or S3),
next to the renditions they describe.

Layout under the catalog root (default <output_root>/_catalog):
  <job_id>/<dam_id>.json            one record per asset, what readers read
  _changes/<job_id>/<dam_id>/*.json the changes each record is folded from (`record_log`)
  _ids/<dam_id>                     the job a record belongs to, so an id alone finds its record

Writes are safe from several processes and hosts at once, with no lock (an object store has
none): a registration or approval change is stored as a change object of its own, then the
record is rebuilt from every change until a listing taken after its write shows none it missed
(`cutline.base.settled_view`). Two hosts changing one asset both keep their change; the same
registration from two hosts stays one record at one revision.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping

from cutline.base import storage
from cutline.base.settled_view import rebuild_until_settled
from dam_adapters.base import (
    ApprovalState,
    AssetRecord,
    AssetSubmission,
    FileRecordAdapter,
    dam_id_for,
    unchanged,
)
from dam_adapters.record_log import RecordLog


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

    def _log(self, job_id: str, dam_id: str) -> RecordLog:
        return RecordLog(storage.join(self.root, "_changes", job_id, dam_id), dam_id)

    def _read(self, uri: str) -> AssetRecord | None:
        try:
            return AssetRecord.model_validate_json(storage.read_bytes(uri))
        except FileNotFoundError:
            return None

    def _current(self, job_id: str, dam_id: str) -> AssetRecord | None:
        """The record as readers see it; folded from its changes when a writer stopped between
        storing a change and writing the record."""
        record = self._read(self._record_uri(job_id, dam_id))
        if record is not None:
            return record
        log = self._log(job_id, dam_id)
        return log.fold(log.names())

    def _changes(self, log: RecordLog, record: AssetRecord | None) -> dict[str, str]:
        """The asset's stored changes; a record written before changes were kept (``record``,
        read before this listing) becomes the first one."""
        names = log.names()
        if not names and record is not None:
            names = log.adopt(record)
        return names

    def _publish(self, job_id: str, log: RecordLog, names: Mapping[str, str]) -> AssetRecord:
        """Write the record folded from every change, until it has settled; returns it."""

        def write(changes: Mapping[str, str]) -> AssetRecord | None:
            record = log.fold(changes)
            if record is not None:
                data = json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False)
                storage.write_bytes(self._record_uri(job_id, log.dam_id), data.encode("utf-8"))
            return record

        record = rebuild_until_settled(
            log.names, write, folded=names, what=f"DAM record {log.dam_id} in {self.describe()}"
        )
        if record is None:  # never: a change was stored before this
            raise KeyError(f"no asset {log.dam_id!r} in {self.describe()}")
        return record

    def _write(self, record: AssetRecord) -> None:
        """Store a whole record (as it stands, replacing what its changes made)."""
        log = self._log(record.job_id, record.dam_id)
        names = self._changes(log, self._read(self._record_uri(record.job_id, record.dam_id)))
        self._point(record.job_id, record.dam_id)
        names = log.append({"kind": "record", "record": record.model_dump(mode="json")}, names)
        self._publish(record.job_id, log, names)

    def _point(self, job_id: str, dam_id: str) -> None:
        # The id's pointer before any change: a write cut short after it leaves no record (a
        # retry registers it), never a record that find() sees but get() cannot read.
        storage.write_bytes(storage.join(self.root, "_ids", dam_id), job_id.encode("utf-8"))

    def register(self, asset: AssetSubmission) -> AssetRecord:
        """Create or update the asset for this job + file + SKU + content; never a duplicate."""
        job_id, dam_id = asset.job_id, dam_id_for(asset.key)
        renditions = {kind: storage.locate(uri).uri() for kind, uri in asset.renditions.items()}
        shown = self._read(self._record_uri(job_id, dam_id))
        if shown is not None and unchanged(shown, asset, renditions):
            return shown  # a rerun re-registering what is there: no write
        log = self._log(job_id, dam_id)
        names = self._changes(log, shown)
        current = log.fold(names)
        if current is not None and unchanged(current, asset, renditions):
            return self._publish(job_id, log, names)  # the record lagged its changes: catch up
        if current is None:
            self._point(job_id, dam_id)
        change = {
            "kind": "register",
            "asset": asset.model_dump(mode="json", exclude={"renditions"}),
            "renditions": renditions,
            "dam_id": dam_id,
        }
        return self._publish(job_id, log, log.append(change, names))

    def update_approval(
        self, dam_id: str, state: ApprovalState, *, by: str, note: str = ""
    ) -> AssetRecord:
        """Change the approval state and append it to the record's history."""
        job_id = self._job_of(dam_id)
        log = self._log(job_id, dam_id)
        names = self._changes(log, self._read(self._record_uri(job_id, dam_id)))
        if log.fold(names) is None:
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}")
        change = {"kind": "approval", "state": ApprovalState(state).value, "by": by, "note": note}
        return self._publish(job_id, log, log.append(change, names))

    def find(self, key: str) -> AssetRecord | None:
        """The asset registered under this idempotency key, if any."""
        job_id = key.split(":", 1)[0]
        return self._current(job_id, dam_id_for(key))

    def _job_of(self, dam_id: str) -> str:
        if not dam_id.startswith("cl-") or "/" in dam_id:
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}")
        try:
            return storage.read_bytes(storage.join(self.root, "_ids", dam_id)).decode("utf-8")
        except FileNotFoundError:
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}") from None

    def get(self, dam_id: str) -> AssetRecord:
        """Read one record; KeyError when the id is unknown."""
        record = self._current(self._job_of(dam_id), dam_id)
        if record is None:
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}")
        return record

    def list_job(self, job_id: str) -> list[AssetRecord]:
        """All assets of a job, ordered by SKU then source name."""
        records = {
            posixpath.basename(uri)[: -len(".json")]: self._read(uri)
            for uri in self._listed(storage.join(self.root, job_id))
            if uri.endswith(".json")
        }
        for uri in self._listed(storage.join(self.root, "_changes", job_id)):
            dam_id = posixpath.basename(uri)
            if records.get(dam_id) is None:  # changes stored, record not written yet
                records[dam_id] = self._current(job_id, dam_id)
        return sorted(
            (r for r in records.values() if r is not None), key=lambda r: (r.sku, r.source_name)
        )

    @staticmethod
    def _listed(folder: str) -> list[str]:
        """URIs of the entries of a folder (none when it does not exist)."""
        loc = storage.locate(folder)
        loc.fs.invalidate_cache(loc.path)  # a listing cached before this process's last write
        if not loc.fs.exists(loc.path):
            return []
        return [loc.uri(path.rstrip("/")) for path in loc.fs.ls(loc.path, detail=False)]
