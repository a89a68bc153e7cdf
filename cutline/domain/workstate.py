"""What each image's stages already produced in a job, so reruns skip unchanged work.

One small JSON record per image under <job>/state/. Each stage that produces files
(cutout, score, export, register) stores the key it was computed for: the content hash
plus whatever else shapes its output (model, confidence version, lane, channels,
presets, DAM). A rerun whose key matches, and whose files still exist, reuses the
result instead of recomputing it. Routing is always redone: it is cheap, and a changed
rules file must re-route without recomputing cutouts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from pydantic import BaseModel, Field

from cutline.base import storage
from cutline.domain.items import ImageItem, JobLayout


class WorkRecord(BaseModel):
    """The item as a stage left it, and the key each stage was computed for."""

    item: ImageItem
    keys: dict[str, str] = Field(default_factory=dict)


def stage_key(*parts: object) -> str:
    """A short digest of everything that shapes a stage's output."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:24]


class WorkState:
    """Reads and writes the per-image work records of one job."""

    def __init__(self, layout: JobLayout) -> None:
        self.layout = layout
        # The record last read per image, so `remember` after a miss does not read it again.
        self._read: dict[str, WorkRecord | None] = {}

    def _uri(self, image_id: str) -> str:
        return storage.join(self.layout.root, "state", f"{image_id}.json")

    def previous(self, item: ImageItem) -> WorkRecord | None:
        """The record of this image (same file, same content), if a run left one."""
        try:
            record = WorkRecord.model_validate_json(storage.read_bytes(self._uri(item.image_id)))
        except (FileNotFoundError, ValueError):
            record = None
        if record is not None and (
            record.item.source != item.source or (item.sha256 and record.item.sha256 != item.sha256)
        ):
            record = None
        self._read[item.image_id] = record
        return record

    def reusable(
        self,
        item: ImageItem,
        stage: str,
        key: str,
        files: Callable[[ImageItem], list[str]] | None = None,
    ) -> ImageItem | None:
        """The item as ``stage`` left it, when it ran with ``key`` and its files still exist."""
        record = self.previous(item)
        if record is None or record.keys.get(stage) != key:
            return None
        if files is not None:
            paths = files(record.item)
            if not paths or not all(p and storage.exists(p) for p in paths):
                return None
        return record.item

    def remember(self, item: ImageItem, stage: str, key: str) -> None:
        """Record that ``stage`` produced the item's current state for ``key``."""
        if item.image_id in self._read:
            record = self._read.pop(item.image_id)
            if record is not None and record.item.sha256 != item.sha256:
                record = None
        else:
            record = self.previous(item)
        keys = {**(record.keys if record else {}), stage: key}
        data = WorkRecord(item=item, keys=keys).model_dump_json()
        storage.write_bytes(self._uri(item.image_id), data.encode("utf-8"))
