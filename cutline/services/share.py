"""Read-only links to a shoot's files for people outside Cutline, served by the local stack.

A link is ``http://HOST:PORT/s/<token>/<file>``: the token is unguessable (256 random bits),
names one folder of one job, and expires (``CUTLINE_SHARE_LINK_DAYS``). Job ids never appear
in a link, so links cannot be enumerated. The registry under the data root keeps only a hash
of each token, so reading it does not hand out working links. The serve process answers GET
for files of the granted folder only (no listing, no other files, no writes); an expired link
answers 410 with what to do next.

The registry holds one file per link (named by the token's hash, found by it when a link is
opened) and, per job, an index of its links' hashes, so issuing a link (one per review page:
thousands in a large shoot) costs the same however many links the studio has issued."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import secrets
import shutil
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, model_validator

from cutline.base.errors import ConfigError
from cutline.base.settings import CutlineSettings
from cutline.domain.items import validate_job_id

_FILE = re.compile(r"^(thumbs/)?[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(html|png|jpg)$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_NAMED = re.compile(r"^[a-z][a-z0-9-]{0,40}\.[a-z0-9]{1,5}$")
_TYPES = {".psd": "image/vnd.adobe.photoshop", ".tif": "image/tiff", ".tiff": "image/tiff"}


class ShareGrant(BaseModel):
    """What one link opens: a folder of one job (its pages and pictures) and, by name, a few
    named files of that job (a review's source, mask and PSD), until a moment."""

    job_id: str
    folder: str
    files: dict[str, str] = {}
    created_at: datetime
    expires_at: datetime
    kind: Literal["contact-sheet", "review-page"] = "contact-sheet"

    @model_validator(mode="before")
    @classmethod
    def _kind_of_older_grants(cls, data: Any) -> Any:
        """Grants written before `kind` existed: only review pages named files."""
        if isinstance(data, dict) and "kind" not in data and data.get("files"):
            return {**data, "kind": "review-page"}
        return data

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the link no longer opens."""
        return (now or datetime.now(UTC)) >= self.expires_at


class ShareLink(BaseModel):
    """A link as handed out: the URL (holding the token) and when it stops working."""

    url: str
    expires_at: datetime

    def describe(self) -> str:
        """The link and its expiry, for a form or a terminal."""
        return f"{self.url} (valid until {self.expires_at:%Y-%m-%d %H:%M} UTC)"


def _registry(settings: CutlineSettings) -> Path:
    return settings.data_root / "shares"


def _grant_file(settings: CutlineSettings, token: str) -> Path:
    return _registry(settings) / f"{hashlib.sha256(token.encode()).hexdigest()}.json"


def _job_index(settings: CutlineSettings, job_id: str) -> Path:
    """The folder naming the hashes of a job's links (empty files), made on first use; a
    registry from before the index existed is indexed once, whole."""
    registry = _registry(settings)
    jobs = registry / "jobs"
    if not jobs.is_dir():
        _index_older_registry(registry, jobs)
    return jobs / job_id


def _index_older_registry(registry: Path, jobs: Path) -> None:
    """Index every link of a registry written before the per-job index (or a new, empty
    one), all at once: built aside and renamed into place, so a process that finds the index
    finds all of it (of two building it at once, the second's rename fails and is dropped)."""
    registry.mkdir(parents=True, exist_ok=True)
    building = registry / f".jobs-{os.getpid()}-{secrets.token_hex(4)}"
    building.mkdir()
    for path in registry.glob("*.json"):
        try:
            grant = ShareGrant.model_validate_json(path.read_text())
            validate_job_id(grant.job_id)
        except (OSError, ValueError, ConfigError):  # it opens nothing: nothing to index
            continue
        (building / grant.job_id).mkdir(exist_ok=True)
        (building / grant.job_id / path.name).touch()
    try:
        building.rename(jobs)
    except OSError:  # another process indexed it first
        shutil.rmtree(building, ignore_errors=True)


def register_share(
    settings: CutlineSettings,
    job_id: str,
    folder: str,
    now: datetime | None = None,
    days: float | None = None,
    files: dict[str, str] | None = None,
) -> ShareLink | None:
    """Issue a new read-only link to a local folder (a contact sheet, or a review page when
    ``files`` names the review's files) and the named local ``files``; None when the folder
    is not on a local disk (share it from the object store instead). Sharing a contact sheet
    also removes the job's expired links (a review page does not: a shoot issues thousands)."""
    validate_job_id(job_id)
    if "://" in folder:
        return None
    named = {name: str(Path(path).resolve()) for name, path in (files or {}).items()}
    if any(not _NAMED.match(name) for name in named) or any("://" in p for p in named.values()):
        raise ValueError(f"not shareable file names or paths: {sorted(named)}")
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    grant = ShareGrant(
        job_id=job_id,
        folder=str(Path(folder).resolve()),
        files=named,
        created_at=now,
        expires_at=now + timedelta(days=days if days is not None else settings.share_link_days),
        kind="review-page" if files is not None else "contact-sheet",
    )
    index = _job_index(settings, job_id)
    if grant.kind == "contact-sheet":
        forget_expired(settings, job_id, now)
    path = _grant_file(settings, token)
    index.mkdir(parents=True, exist_ok=True)
    (index / path.name).touch()  # indexed first: no link exists that a revoke cannot find
    path.write_text(grant.model_dump_json())
    url = f"http://{settings.share_host}:{settings.resolved_share_port}/s/{token}/index.html"
    return ShareLink(url=url, expires_at=grant.expires_at)


def grants_of(settings: CutlineSettings, job_id: str) -> list[tuple[Path, ShareGrant]]:
    """Every registered grant of a job (expired ones too), newest first."""
    index = _job_index(settings, validate_job_id(job_id))
    found = []
    for entry in index.glob("*.json") if index.is_dir() else ():
        path = _registry(settings) / entry.name
        try:
            grant = ShareGrant.model_validate_json(path.read_text())
        except (OSError, ValueError):  # revoked, half-written, or from an older version
            continue
        if grant.job_id == job_id:
            found.append((path, grant))
    return sorted(found, key=lambda pair: pair[1].created_at, reverse=True)


def _forget(settings: CutlineSettings, path: Path, job_id: str) -> None:
    """Remove one link: its grant first (it stops opening), then its index entry."""
    path.unlink(missing_ok=True)
    (_job_index(settings, job_id) / path.name).unlink(missing_ok=True)


def forget_expired(settings: CutlineSettings, job_id: str, now: datetime | None = None) -> int:
    """Remove a job's expired links (they answer 410 until then); how many."""
    expired = [path for path, grant in grants_of(settings, job_id) if grant.expired(now)]
    for path in expired:
        _forget(settings, path, job_id)
    return len(expired)


def renew_share(settings: CutlineSettings, job_id: str, days: float | None = None) -> ShareLink:
    """A fresh link to the contact sheet the job's newest contact-sheet link opened (the old
    links keep their own expiry; revoke them with ``revoke_shares``)."""
    grants = [
        pair
        for pair in grants_of(settings, validate_job_id(job_id))
        if pair[1].kind == "contact-sheet"
    ]
    if not grants:
        raise LookupError(
            f"shoot {job_id} has no shared contact sheet yet: it is shared when its sign-off "
            "is requested (after the shoot run)"
        )
    link = register_share(settings, job_id, grants[0][1].folder, days=days)
    assert link is not None  # the folder was local when it was first shared
    return link


def revoke_shares(settings: CutlineSettings, job_id: str) -> int:
    """Make every link of a job (contact sheets and review pages) stop working at once; how
    many there were."""
    grants = grants_of(settings, validate_job_id(job_id))
    for path, _ in grants:
        _forget(settings, path, job_id)
    return len(grants)


def _resolve(settings: CutlineSettings, path: str) -> tuple[int, Path | str]:
    """(200, file) for a file a client may read; otherwise (status, message)."""
    parts = path.split("?", 1)[0].strip("/").split("/", 2)
    if len(parts) != 3 or parts[0] != "s" or not _TOKEN.match(parts[1]):
        return 404, "No such page"
    try:
        grant = ShareGrant.model_validate_json(_grant_file(settings, parts[1]).read_text())
    except (OSError, ValueError):
        return 404, "No such link (it may have been revoked)"
    if grant.expired():
        return 410, (
            f"This link expired on {grant.expires_at:%Y-%m-%d %H:%M} UTC; ask the producer "
            f"for a new one (cutline signoff link {grant.job_id})"
        )
    if parts[2] in grant.files:
        named = Path(grant.files[parts[2]])
        return (200, named) if named.is_file() else (404, "That file is no longer there")
    if not _FILE.match(parts[2]):
        return 404, "No such file in this contact sheet"
    folder = Path(grant.folder).resolve()
    target = (folder / parts[2]).resolve()
    if not (target.is_relative_to(folder) and target.is_file()):
        return 404, "No such file in this contact sheet"
    return 200, target


def start_share_server(settings: CutlineSettings) -> ThreadingHTTPServer:
    """Serve shared contact sheets read-only, in a background thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return

        def do_GET(self) -> None:
            status, found = _resolve(settings, self.path)
            if status != 200 or not isinstance(found, Path):
                self.send_error(status, str(found))
                return
            body = found.read_bytes()
            kind = _TYPES.get(found.suffix.lower()) or mimetypes.guess_type(found.name)[0]
            self.send_response(200)
            self.send_header("Content-Type", kind or "application/octet-stream")
            if found.suffix.lower() in {".psd", ".tif", ".tiff"}:  # open in Photoshop, not here
                name = self.path.rsplit("/", 1)[-1]
                self.send_header("Content-Disposition", f'attachment; filename="{name}"')
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")  # the token stays in this page
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.send_error(405, "The contact sheet is read-only")

        do_PUT = do_DELETE = do_PATCH = do_POST

    server = ThreadingHTTPServer((settings.share_host, settings.resolved_share_port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="contact-sheet-share").start()
    return server
