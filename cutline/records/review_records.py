"""Review decisions as records of their own in the job folder: <job>/reviews/<image_id>.json,
written whole by the review run that landed the decision. They are the durable truth the
ledger's review columns are rebuilt from (`cutline.records.ledger`), so a decision is kept even
when two hosts rewrite the ledger at the same moment."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from typing import Any

from cutline.base import storage
from cutline.domain.items import JobLayout
from rules.engine import Lane

# The ledger columns a review decision sets.
REVIEW_FIELDS = (
    "png",
    "psd",
    "jpg",
    "dam_id",
    "review_state",
    "reviewed_by",
    "review_note",
    "review_run_id",
)


def decision_record(row: Mapping[str, str], base: str) -> bytes:
    """The record of a decided review: its ledger fields, the file it is for (source and
    content hash) and the ledger base it was decided against (see `applied`)."""
    record = {field: row[field] for field in REVIEW_FIELDS} | {
        "source": row["source"],
        "sha256": row["sha256"],
        "base": base,
    }
    return json.dumps(record, indent=2).encode("utf-8")


def applied(row: dict[str, str], record: Mapping[str, Any] | None, base: str) -> dict[str, str]:
    """The ledger row with its review decision merged in, when the decision is for this very
    file content and the row is in the review lane, or the decision was taken against this same
    ledger base (``base``: an image the producer sent back from the auto lane, decided since the
    shoot last wrote its rows; a rerun that re-routed a reviewed image to auto drops it)."""
    if record is None:
        return row
    if record.get("source") != row.get("source") or record.get("sha256") != row.get("sha256"):
        return row
    if row.get("lane") != Lane.REVIEW.value and not (base and record.get("base") == base):
        return row
    return {**row, **{field: str(record.get(field, "")) for field in REVIEW_FIELDS}}


def _version(info: Mapping[str, Any]) -> str:
    """A version of a listed object that changes whenever it is rewritten (S3: its ETag, a
    digest of its bytes, and its time; other stores: whatever of these they give)."""
    keys = ("ETag", "etag", "md5Hash", "generation", "LastModified", "mtime", "created", "size")
    return "|".join(str(info.get(key, "")) for key in keys)


class DecisionRecords:
    """The decision records of one job, listed with their versions and read once per version."""

    def __init__(self, layout: JobLayout) -> None:
        self.layout = layout
        self._loc = storage.locate(layout.reviews)
        self._read: dict[tuple[str, str], dict[str, Any]] = {}

    def versions(self) -> dict[str, str]:
        """Image id -> version of every decision record now in the job folder."""
        loc = self._loc
        found: dict[str, str] = {}
        if loc.is_local:
            try:
                with os.scandir(loc.path) as entries:
                    for entry in entries:
                        if entry.name.endswith(".json") and not entry.name.startswith("."):
                            st = entry.stat()  # a rewrite is a rename: a new inode and time
                            found[entry.name[:-5]] = f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
            except FileNotFoundError:
                pass
            return found
        loc.fs.invalidate_cache(loc.path)
        try:
            listed = loc.fs.ls(loc.path, detail=True)
        except FileNotFoundError:
            return found
        for info in listed:
            name = posixpath.basename(str(info["name"]).rstrip("/"))
            if info.get("type") == "file" and name.endswith(".json"):
                found[name[:-5]] = _version(info)
        return found

    def read(self, versions: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """Image id -> decision record, for the listed records (each at that version or a
        newer one); a record listed once is read again only when its version changed."""
        wanted = {i: v for i, v in versions.items() if (i, v) not in self._read}
        join = os.path.join if self._loc.is_local else posixpath.join
        paths = {image_id: join(self._loc.path, f"{image_id}.json") for image_id in wanted}
        contents = self._loc.fs.cat(list(paths.values()), on_error="return") if paths else {}
        for image_id, path in paths.items():
            data = contents[path] if path in contents else self._loc.fs.cat_file(path)
            if isinstance(data, BaseException):
                raise data
            try:
                self._read[(image_id, wanted[image_id])] = json.loads(data)
            except ValueError as exc:
                raise ValueError(
                    f"The review decision record {self._loc.uri(path)} is not valid JSON "
                    f"({exc}), so the ledger cannot show that decision. Restore the file from "
                    "a backup, or delete it and have the image reviewed again (sign-off "
                    "send-back)."
                ) from exc
        return {i: self._read[(i, v)] for i, v in versions.items()}
