"""Storage shared by the hosts that submit and run Prefect background tasks.

Prefect stores a background task run's parameters when it is submitted and its result when a
task worker ends it, in the task's result storage; the submitting shoot and every task worker
must reach the same one. `CutlineStorage` is that storage as a Prefect block: a folder or
URI (``s3://studio-cutline/task-runs``) read and written through `cutline.base.storage`, so
each host uses its own S3 endpoint and credentials (CUTLINE_S3_*) and the block document on
the Prefect server holds only the location, never a secret.
"""

from __future__ import annotations

import asyncio

from prefect.filesystems import WritableFileSystem
from pydantic import Field

from cutline.base import storage


class CutlineStorage(WritableFileSystem):
    """A folder or object-store prefix that every Cutline host reaches with its own
    credentials."""

    _block_type_name = "Cutline storage"
    _block_type_slug = "cutline-storage"
    _description = (
        "A folder or URI (s3://bucket/prefix) shared by every Cutline host, read and written "
        "with each host's own credentials (CUTLINE_S3_*): none are stored in the block."
    )

    basepath: str = Field(
        description="Shared folder or URI, e.g. s3://studio-cutline/task-runs or /mnt/shared/x."
    )

    def _where(self, path: str) -> str:
        if path.startswith(self.basepath.rstrip("/") + "/"):
            return path  # Prefect hands back a key it was given as a full path
        return storage.join(self.basepath, path)

    # Prefect calls these with ``_sync=True`` where it needs a synchronous call; they always are.
    def read_path(self, path: str, _sync: bool = True) -> bytes:  # type: ignore[override]
        """The bytes stored under ``path``."""
        return storage.read_bytes(self._where(path))

    def write_path(self, path: str, content: bytes, _sync: bool = True) -> str:  # type: ignore[override]
        """Store ``content`` under ``path`` (complete or not at all); return where."""
        return storage.write_bytes(self._where(path), content)

    async def aread_path(self, path: str) -> bytes:
        """`read_path` off the event loop (task workers read parameters in theirs)."""
        return await asyncio.to_thread(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        """`write_path` off the event loop."""
        return await asyncio.to_thread(self.write_path, path, content)

    def delete_path(self, path: str) -> None:
        """Remove what is stored under ``path``, if anything."""
        loc = storage.locate(self._where(path))
        if loc.fs.exists(loc.path):
            loc.fs.rm_file(loc.path)
