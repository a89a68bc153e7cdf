"""The default DAM: a local catalog a person can inspect.

Layout under the catalog folder:
  records/<dam_id>.json      one readable JSON record per asset (the source of truth)
  files/<dam_id>/<file>      the registered renditions (hard-linked when possible)
  index.sqlite               an index (unique idempotency key) for lookups and listing
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from cutline.base import storage
from cutline.base.errors import StorageFullError, StorageUnwritableError
from dam_adapters.base import (
    AssetRecord,
    AssetSubmission,
    FileRecordAdapter,
    dam_id_for,
    next_record,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    dam_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    source_name TEXT NOT NULL,
    approval_state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assets_job ON assets(job_id, sku, source_name);
"""


def _catalog_error(root: Path, what: str, full: bool) -> StorageFullError | StorageUnwritableError:
    if full:
        return StorageFullError(
            f"No space left in the DAM catalog at {root} writing {what}; the asset was not "
            "registered.",
            hint="Free space there (or point CUTLINE_CATALOG_DIR at a larger disk) and rerun "
            "the job; finished images are kept and registered then.",
        )
    return StorageUnwritableError(
        f"The DAM catalog at {root} refuses writes ({what}); the asset was not registered.",
        hint="Make that folder writable (or point CUTLINE_CATALOG_DIR elsewhere) and rerun the "
        "job; finished images are kept.",
    )


class LocalCatalog(FileRecordAdapter):
    """Assets as JSON records plus copies of their renditions in a local folder."""

    name = "local-catalog"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "records").mkdir(parents=True, exist_ok=True)
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        super().__init__()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def describe(self) -> str:
        """Where this catalog lives."""
        return f"local-catalog at {self.root}"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite", timeout=60, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _record_path(self, dam_id: str) -> Path:
        return self.root / "records" / f"{dam_id}.json"

    @contextlib.contextmanager
    def _space(self, what: str) -> Iterator[None]:
        """A full or read-only catalog disk stops the batch with the catalog's own cause
        (like a full output disk), not "unexpected OSError" on every image."""
        try:
            yield
        except (StorageFullError, StorageUnwritableError) as exc:
            full = isinstance(exc, StorageFullError)
            raise _catalog_error(self.root, what, full) from exc
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "full" in text or "readonly" in text or "read-only" in text:
                raise _catalog_error(self.root, what, "full" in text) from exc
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _catalog_error(self.root, what, True) from exc
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise _catalog_error(self.root, what, False) from exc
            raise

    def _write(self, record: AssetRecord) -> None:
        with self._space(f"the record of {record.sku} ({record.source_name})"):
            self._write_record(record)

    def _write_record(self, record: AssetRecord) -> None:
        data = json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False)
        storage.write_bytes(str(self._record_path(record.dam_id)), data.encode("utf-8"))
        with self._connect() as db:
            db.execute(
                "INSERT INTO assets VALUES (?,?,?,?,?,?,?) ON CONFLICT(dam_id) DO UPDATE SET "
                "approval_state=excluded.approval_state, updated_at=excluded.updated_at, "
                "sku=excluded.sku, source_name=excluded.source_name",
                (
                    record.dam_id,
                    record.idempotency_key,
                    record.job_id,
                    record.sku,
                    record.source_name,
                    record.approval_state.value,
                    record.updated_at,
                ),
            )

    def _store_files(self, dam_id: str, renditions: dict[str, str]) -> dict[str, str]:
        folder = self.root / "files" / dam_id
        folder.mkdir(parents=True, exist_ok=True)
        stored: dict[str, str] = {}
        for kind, uri in renditions.items():
            name = os.path.basename(storage.locate(uri).path)
            target = folder / f"{kind.replace(':', '-')}__{name}"
            tmp = target.with_name(f".{target.name}.part")
            loc = storage.locate(uri)
            try:
                if loc.is_local:
                    try:
                        if tmp.exists():
                            tmp.unlink()
                        os.link(loc.path, tmp)
                    except OSError:
                        shutil.copyfile(loc.path, tmp)
                else:
                    tmp.write_bytes(storage.read_bytes(uri))
                os.replace(tmp, target)
            except BaseException:  # a full disk, say: no half-copied file stays behind
                tmp.unlink(missing_ok=True)
                raise
            stored[kind] = str(target)
        return stored

    def register(self, asset: AssetSubmission) -> AssetRecord:
        """Create or update the asset for this job + source hash; never a duplicate."""
        with self._lock:
            existing = self.find(asset.key)
            dam_id = existing.dam_id if existing else dam_id_for(asset.key)
            with self._space(f"the renditions of {asset.sku} ({asset.source_name})"):
                stored = self._store_files(dam_id, asset.renditions)
            record = next_record(existing, asset, stored, dam_id)
            if record is not existing:
                self._write(record)
            return record

    def find(self, key: str) -> AssetRecord | None:
        """The asset registered under this idempotency key, if any."""
        with self._connect() as db:
            row = db.execute("SELECT dam_id FROM assets WHERE idempotency_key=?", (key,)).fetchone()
        return self.get(row[0]) if row else None

    def get(self, dam_id: str) -> AssetRecord:
        """Read one record; KeyError when the id is unknown."""
        path = self._record_path(dam_id)
        if not dam_id.startswith("cl-") or not path.is_file():
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}")
        return AssetRecord.model_validate_json(path.read_text(encoding="utf-8"))

    def list_job(self, job_id: str) -> list[AssetRecord]:
        """All assets of a job, ordered by SKU then source name."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT dam_id FROM assets WHERE job_id=? ORDER BY sku, source_name", (job_id,)
            ).fetchall()
        return [self.get(r[0]) for r in rows]
