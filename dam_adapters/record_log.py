"""The changes of one asset record in the object-store catalog, each an object of its own.

A registration or an approval change is written as a new object, never over another one:
<catalog>/_changes/<job_id>/<dam_id>/<seq>-<time>-<random>.json. The record is the fold of
every change in name order, so two hosts changing one asset at the same moment both keep their
change (the record's history lists both), and the same registration landing twice folds to one
record (the second changes nothing: `next_record`). ``seq`` is one more than the highest the
writer saw, so a change made after another was seen always folds after it, whatever the hosts'
clocks say; changes made at the same moment fold in the order of their names.

A change is one of:
  register  an AssetSubmission and its renditions      -> `next_record`
  approval  a state, who and why                       -> `approval_update`
  record    a whole record (a catalog written before changes were kept, or `_write`)
each stamped with the writer's time, so every host folds the same record from the same changes.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cutline.base import storage
from dam_adapters.base import (
    ApprovalState,
    AssetRecord,
    AssetSubmission,
    approval_update,
    next_record,
    utc_now,
)

# The change that holds a record written before changes were kept: a fixed name, so hosts that
# adopt the same legacy record at once write the same object (with the same bytes).
ADOPTED = f"{0:010d}-record.json"


def _stamped(record: AssetRecord, before: AssetRecord | None, at: str) -> AssetRecord:
    """``record`` with the change's own time wherever the fold would put the folding host's."""
    kept = len(before.history) if before else 0
    history = [*record.history[:kept], *({**h, "at": at} for h in record.history[kept:])]
    return record.model_copy(
        update={
            "updated_at": at,
            "created_at": before.created_at if before else at,
            "history": history,
        }
    )


def apply_change(record: AssetRecord | None, change: Mapping[str, Any]) -> AssetRecord | None:
    """The record after one change."""
    kind = change.get("kind")
    if kind == "record":
        return AssetRecord.model_validate(change["record"])
    if kind == "register":
        asset = AssetSubmission.model_validate(change["asset"])
        after = next_record(record, asset, dict(change["renditions"]), dam_id=change["dam_id"])
        return record if after is record else _stamped(after, record, change["at"])
    if kind == "approval" and record is not None:
        after = approval_update(
            record, ApprovalState(change["state"]), change["by"], change["note"]
        )
        return _stamped(after, record, change["at"])
    raise ValueError(f"unknown change {kind!r} (or an approval change of a record not registered)")


class RecordLog:
    """The change objects of one asset: listed by name, each read once (they never change)."""

    def __init__(self, folder: str, dam_id: str) -> None:
        self.dam_id = dam_id
        self._loc = storage.locate(folder)
        self._read: dict[str, dict[str, Any]] = {}

    def names(self) -> dict[str, str]:
        """Every change now stored, as name -> name (a change is never rewritten, so its name
        is its version; see `cutline.base.settled_view`)."""
        loc = self._loc
        try:
            if loc.is_local:
                found = os.listdir(loc.path)
            else:
                loc.fs.invalidate_cache(loc.path)
                found = [posixpath.basename(p.rstrip("/")) for p in loc.fs.ls(loc.path, False)]
        except FileNotFoundError:
            return {}
        return {n: n for n in found if n.endswith(".json") and not n.startswith(".")}

    def _uri(self, name: str) -> str:
        return self._loc.uri(
            os.path.join(self._loc.path, name)
            if self._loc.is_local
            else posixpath.join(self._loc.path, name)
        )

    def fold(self, names: Iterable[str]) -> AssetRecord | None:
        """The record these changes make, applied in name order."""
        record: AssetRecord | None = None
        for name in sorted(names):
            if name not in self._read:
                self._read[name] = json.loads(storage.read_bytes(self._uri(name)))
            try:
                record = apply_change(record, self._read[name])
            except (KeyError, ValueError) as exc:
                raise ValueError(
                    f"Change {self._uri(name)} of DAM record {self.dam_id} cannot be applied "
                    f"({exc}); it was not written by this version of Cutline. Move it out of "
                    "the catalog and register the job again."
                ) from exc
        return record

    def _write(self, name: str, change: dict[str, Any], names: Mapping[str, str]) -> dict[str, str]:
        storage.write_bytes(
            self._uri(name), json.dumps(change, indent=2, ensure_ascii=False).encode("utf-8")
        )
        self._read[name] = change
        return {**names, name: name}

    def append(self, change: dict[str, Any], names: Mapping[str, str]) -> dict[str, str]:
        """Store a new change after every change in ``names`` (what the writer has seen);
        returns ``names`` with it."""
        seq = max((int(n.split("-", 1)[0]) for n in names if n[:10].isdigit()), default=0) + 1
        moment = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{seq:010d}-{moment}-{uuid.uuid4().hex}.json"
        return self._write(name, {**change, "at": utc_now()}, names)

    def adopt(self, legacy: AssetRecord) -> dict[str, str]:
        """Make a record written before changes were kept the first change. The caller read
        ``legacy`` and then found no change stored: a record rewritten by this code is written
        only after a change is stored, so ``legacy`` is the old record as every host reads it,
        and hosts adopting it at once write the same bytes under the same name."""
        return self._write(
            ADOPTED, {"kind": "record", "record": legacy.model_dump(mode="json")}, {}
        )
