"""Read-only links to a shoot's files for people outside Cutline, served by the local stack.

This module serves job folders on a local disk. A job folder on object storage needs no
server: its links are presigned URLs of objects in the bucket (`cutline.services.
object_share`), and `register_share`, `renew_share` and `revoke_shares` hand such a folder
over to it.

A link is ``http://HOST:PORT/s/<token>/<file>``: the token is unguessable (256 random bits),
names one folder of one job, and expires (``CUTLINE_SHARE_LINK_DAYS``). Job ids never appear
in a link, so links cannot be enumerated. The registry under the data root keeps only a hash
of each token, so reading it does not hand out working links. The worker process answers GET
for files of the granted folder only (no listing, no other files, no writes); an expired link
answers 410 with what to do next.

The registry holds one file per link (named by the token's hash, found by it when a link is
opened) and, per job, an index of its links' hashes, so issuing a link (one per review page:
thousands in a large shoot) costs the same however many links the studio has issued.

A link is checked again each time a file is served, not only when it is issued: the file is
opened by its real path one folder at a time without following any symlink (a file or a
folder swapped for a link after the link was issued is refused), it must be a regular file
(a FIFO or device swapped in is refused without being read), a review's named file must
still be the very file (device and inode) it was when the link was issued, and a file with
more than one hard link is refused unless its owner owns the folder it was shared from.
Files are streamed in chunks. The server keeps a fixed number of threads: a connection gets
one only once its whole request head has arrived (idle and slow clients wait in one
selector and are dropped after a few seconds), and beyond the queue clients get 503."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import re
import secrets
import selectors
import shutil
import socket
import stat
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, model_validator

from cutline.base.errors import ConfigError
from cutline.base.settings import CutlineSettings
from cutline.domain.items import validate_job_id
from cutline.services.object_share import (
    INLINE_TYPES,
    content_disposition,
    content_type_of,
    is_object_store,
    renew_sheet,
    revoke_job,
    share_sheet,
)

_FILE = re.compile(r"^(thumbs/)?[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(html|png|jpg)$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_NAMED = re.compile(r"^[a-z][a-z0-9-]{0,40}\.[a-z0-9]{1,5}$")
_CHUNK = 256 * 1024


class ShareGrant(BaseModel):
    """What one link opens: a folder of one job (its pages and pictures) and, by name, a few
    named files of that job (a review's source, mask and PSD), until a moment."""

    job_id: str
    folder: str
    files: dict[str, str] = {}
    # per named file: (device, inode) when the link was issued; it must still be that file
    identities: dict[str, tuple[int, int]] = {}
    roots: list[str] = []  # the real folders the named files were shared from
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


class Refused(ValueError):
    """A file that is not shared or served; the message says why, for whoever holds the link."""


_GONE = "That file is no longer there; ask the studio for a new link"
_SWAPPED = (
    "That file was replaced (by a link or by another file) after this link was issued, so it "
    "is not served; ask the studio for a new link"
)


def _root_of(path: PurePosixPath, roots: list[str]) -> PurePosixPath:
    """The shared folder ``path`` lies in: the first of ``roots`` holding it (its own folder
    when no roots were recorded, as in links issued before they were)."""
    for root in map(PurePosixPath, roots):
        if path.is_relative_to(root) and path != root:
            return root
    if roots:
        raise Refused("That file is not in the folders this link shares")
    return path.parent


def _open_regular(
    path: PurePosixPath, root: PurePosixPath, *, links_of_owner: bool
) -> tuple[int, os.stat_result]:
    """A descriptor open for reading on the regular file at the real ``path`` inside
    ``root``, and its status. Every folder is opened by name from the one above it and the
    file itself too, never following a symlink: a file or a folder swapped for a link is
    refused, not followed. A FIFO or a device is refused before it is opened (and opened
    without blocking should one be swapped in between). A file with more than one hard link
    is refused unless ``links_of_owner`` and its owner owns ``root`` (a hard link to someone
    else's file, /etc/shadow say, made inside a shared folder)."""
    if (
        not path.is_absolute()
        or ".." in path.parts
        or not path.is_relative_to(root)
        or path == root
    ):
        raise Refused("That file is not in the folders this link shares")
    folder = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    root_owner = os.fstat(folder).st_uid if root == PurePosixPath("/") else None
    try:
        walked = PurePosixPath("/")
        for part in path.parts[1:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
            walked /= part
            if walked == root:
                root_owner = os.fstat(folder).st_uid
        before = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
        if stat.S_ISLNK(before.st_mode):
            raise Refused(_SWAPPED)
        if not stat.S_ISREG(before.st_mode):
            raise Refused(
                "That is no longer a regular file (a FIFO, a device or a folder took its "
                "place), so it is not served; ask the studio for a new link"
            )
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
        fd = os.open(path.name, flags, dir_fd=folder)
    except FileNotFoundError as exc:
        raise Refused(_GONE) from exc
    except PermissionError as exc:
        raise Refused(
            "The share server may not read that file (its permissions changed); ask the "
            "studio for a new link"
        ) from exc
    except OSError as exc:  # ELOOP, ENOTDIR: a folder on the way is a link now
        raise Refused(_SWAPPED) from exc
    finally:
        os.close(folder)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            raise Refused(_SWAPPED)
        if now.st_nlink > 1 and not (links_of_owner and now.st_uid == root_owner):
            raise Refused(
                "That file has other hard links and is not owned by the owner of the shared "
                "folder, so it is not served; ask the studio for a new link"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, now


def _identity(path: str, roots: list[str]) -> tuple[str, tuple[int, int]]:
    """The real path of a file to share by name and its (device, inode); Refused when it lies
    outside ``roots`` or is not a plain file of their owner (see ``_open_regular``)."""
    real = PurePosixPath(Path(path).resolve())
    fd, status = _open_regular(real, _root_of(real, roots), links_of_owner=True)
    os.close(fd)
    return str(real), (status.st_dev, status.st_ino)


def shareable_file(path: str, roots: list[str]) -> str | None:
    """The real path of ``path`` when a link may name it: a regular file inside one of the
    local folders ``roots`` (reached without leaving them through a symlink), not a hard link
    to someone else's file; None otherwise."""
    real_roots = [str(Path(root).resolve()) for root in roots]
    try:
        return _identity(path, real_roots)[0] if real_roots else None
    except (Refused, OSError):
        return None


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
    roots: list[str] | None = None,
) -> ShareLink | None:
    """Issue a new read-only link to a local folder (a contact sheet, or a review page when
    ``files`` names the review's files) and the named local ``files``. Each named file must
    lie in one of the local folders ``roots`` (by default its own folder); the link opens it
    only while it is that very file (its device and inode are recorded). Sharing a contact
    sheet also removes the job's expired links (a review page does not: a shoot issues
    thousands).

    A contact sheet in a bucket (``s3://.../<job>/contact-sheet``) gets a presigned link
    instead (see `cutline.services.object_share`, valid at most seven days); None for any
    other folder not on a local disk (a review page in a bucket is published by
    `cutline.services.review_page`)."""
    validate_job_id(job_id)
    if is_object_store(folder) and files is None:
        shared = share_sheet(
            job_id, folder, days if days is not None else settings.share_link_days, now
        )
        return ShareLink(url=shared.url, expires_at=shared.expires_at)
    if "://" in folder:
        return None
    wanted = files or {}
    if any(not _NAMED.match(name) for name in wanted) or any("://" in p for p in wanted.values()):
        raise ValueError(f"not shareable file names or paths: {sorted(wanted)}")
    real_roots = [str(Path(root).resolve()) for root in roots or ()]
    named, identities = {}, {}
    for name, path in wanted.items():
        try:
            named[name], identities[name] = _identity(path, real_roots)
        except Refused as exc:
            raise Refused(f"{name} ({path}) cannot be shared: {exc}") from exc
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    grant = ShareGrant(
        job_id=job_id,
        folder=str(Path(folder).resolve()),
        files=named,
        identities=identities,
        roots=real_roots,
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


def renew_share(
    settings: CutlineSettings,
    job_id: str,
    days: float | None = None,
    output_root: str | None = None,
) -> ShareLink:
    """A fresh link to the contact sheet the job's newest contact-sheet link opened (the old
    links keep their own expiry; revoke them with ``revoke_shares``). A job whose
    ``output_root`` is a bucket gets a presigned link to its sheet there."""
    if output_root and is_object_store(output_root):
        days = days if days is not None else settings.share_link_days
        shared = renew_sheet(job_id, output_root, days)
        return ShareLink(url=shared.url, expires_at=shared.expires_at)
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


def revoke_shares(settings: CutlineSettings, job_id: str, output_root: str | None = None) -> int:
    """Make every link of a job (contact sheets and review pages) stop working at once; how
    many there were. With a bucket as ``output_root``, its presigned links end too: what
    they open is deleted."""
    grants = grants_of(settings, validate_job_id(job_id))
    for path, _ in grants:
        _forget(settings, path, job_id)
    if output_root and is_object_store(output_root):
        return len(grants) + revoke_job(job_id, output_root)
    return len(grants)


@dataclass
class _Opened:
    """A file about to be served: open, its size when checked, and its own name."""

    fd: int
    size: int
    name: str
    named: bool  # one of a review's named files (not a page of the shared folder)


def _resolve(settings: CutlineSettings, path: str) -> tuple[int, _Opened | str]:
    """(200, the file opened) for a file a client may read; otherwise (status, message)."""
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
        real = PurePosixPath(grant.files[parts[2]])
        try:
            fd, status = _open_regular(real, _root_of(real, grant.roots), links_of_owner=True)
        except Refused as exc:
            return 404, f"{exc} (the review form names the file's path on the studio's disks)"
        expected = grant.identities.get(parts[2])
        if expected is not None and (status.st_dev, status.st_ino) != tuple(expected):
            os.close(fd)
            return 404, f"{_SWAPPED} (the review form names the file's path on the studio's disks)"
        return 200, _Opened(fd, status.st_size, real.name, named=True)
    if not _FILE.match(parts[2]):
        return 404, "No such file in this contact sheet"
    folder = PurePosixPath(grant.folder)
    try:  # the pages are Cutline's own files: never a hard link
        fd, status = _open_regular(folder / parts[2], folder, links_of_owner=False)
    except Refused as exc:
        return 404, f"No such file in this contact sheet ({exc})"
    return 200, _Opened(fd, status.st_size, PurePosixPath(parts[2]).name, named=False)


class _SocketWriter(io.BufferedIOBase):
    """The response stream: every write is sent whole (or fails within the socket timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._sock.sendall(data)
        return len(data)


class ShareServer:
    """The share server's connections and threads. One thread waits on every connection at
    once until its request head has arrived (an idle or slow client costs a socket, not a
    thread; one that has not sent its head within ``head_seconds`` is answered 408 and
    dropped, and beyond ``waiting`` connections the oldest waiting one is dropped), then
    hands the request to one of ``workers`` threads; with more than ``queued`` requests
    waiting for a worker, a request is answered 503. Every send has ``io_seconds``."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        workers: int = 16,
        queued: int = 128,
        waiting: int = 256,
        head_seconds: float = 10.0,
        io_seconds: float = 30.0,
    ) -> None:
        self.socket = socket.create_server(address, backlog=128)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()[:2]
        self._handler = handler
        self._jobs: queue.Queue = queue.Queue()
        self._queued, self._waiting = queued, waiting
        self._head_seconds, self._io_seconds = head_seconds, io_seconds
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._serving = False
        self._workers = [
            threading.Thread(target=self._work, daemon=True, name=f"share-worker-{n}")
            for n in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def serve_forever(self) -> None:
        """Accept connections and read their request heads until ``shutdown``."""
        self._serving = True
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        # connection -> (deadline, head so far); in accept order, which is deadline order
        waiting: dict[socket.socket, tuple[float, bytearray, Any]] = {}
        try:
            while not self._stop.is_set():
                first = next(iter(waiting.values()), None)
                pause = 1.0 if first is None else min(1.0, first[0] - time.monotonic())
                for key, _ in selector.select(max(0.0, pause)):
                    if key.fileobj is self.socket:
                        self._accept(selector, waiting)
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    elif key.fileobj in waiting:
                        try:
                            self._read(selector, waiting, key.fileobj)  # type: ignore[arg-type]
                        except Exception:  # that connection's loss alone, never the server's
                            if key.fileobj in waiting:
                                self._drop(selector, waiting, key.fileobj)  # type: ignore[arg-type]
                now = time.monotonic()
                for conn, (deadline, _, _) in list(waiting.items()):
                    if deadline > now:
                        break
                    self._drop(
                        selector,
                        waiting,
                        conn,
                        "408 Request Timeout",
                        "The request did not arrive in time; open the link again",
                    )
        finally:
            for conn in list(waiting):
                self._drop(selector, waiting, conn)
            selector.close()
            self._stopped.set()

    def _accept(self, selector: selectors.BaseSelector, waiting: dict) -> None:
        while True:
            try:
                conn, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors, say: make room from the idlest
                if waiting:
                    self._drop(selector, waiting, next(iter(waiting)))
                return
            conn.setblocking(False)
            if len(waiting) >= self._waiting:  # the longest idle one makes way
                self._drop(selector, waiting, next(iter(waiting)))
            waiting[conn] = (time.monotonic() + self._head_seconds, bytearray(), address)
            selector.register(conn, selectors.EVENT_READ)

    def _read(self, selector: selectors.BaseSelector, waiting: dict, conn: socket.socket) -> None:
        _, head, address = waiting[conn]
        try:
            data = conn.recv(8192)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(selector, waiting, conn)
            return
        head += data
        if b"\r\n\r\n" in head or b"\n\n" in head:
            selector.unregister(conn)
            del waiting[conn]
            if self._jobs.qsize() >= self._queued:
                self._answer(conn, "503 Service Unavailable", "Busy: try again in a minute")
                conn.close()
                return
            self._jobs.put((conn, bytes(head), address))
        elif len(head) > 16384:
            self._drop(
                selector,
                waiting,
                conn,
                "431 Request Header Fields Too Large",
                "The request is too long for a share link; open the link as it was sent",
            )

    def _drop(
        self,
        selector: selectors.BaseSelector,
        waiting: dict,
        conn: socket.socket,
        status: str = "",
        message: str = "",
    ) -> None:
        selector.unregister(conn)
        del waiting[conn]
        if status:
            self._answer(conn, status, message)
        conn.close()

    @staticmethod
    def _answer(conn: socket.socket, status: str, message: str) -> None:
        """A short answer sent without waiting (a client not reading it just misses it)."""
        body = message.encode()
        head = f"HTTP/1.0 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        with contextlib.suppress(OSError):
            conn.send(head.encode() + body)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            conn, head, address = job
            try:
                conn.setblocking(True)
                conn.settimeout(self._io_seconds)
                self._handler((conn, head), address, self)  # type: ignore[arg-type]
            except Exception:  # the client went away or was too slow: its loss alone
                pass
            finally:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_WR)
                conn.close()

    def shutdown(self) -> None:
        """Stop serving (waits for the accepting thread to end)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._serving:
            self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket and end the workers once their requests are done."""
        self.socket.close()
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].close()
        for _ in self._workers:
            self._jobs.put(None)
        self._wake_r.close()
        self._wake_w.close()


def start_share_server(settings: CutlineSettings, **limits: Any) -> ShareServer:
    """Serve shared contact sheets and review pages read-only, in background threads (a fixed
    number: see ``ShareServer``, whose ``limits`` these are)."""

    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:  # the request head was read by the server's selector
            self.connection, head = self.request
            self.rfile = io.BytesIO(head)
            self.wfile = _SocketWriter(self.connection)

        def log_message(self, *args) -> None:
            return

        def do_GET(self) -> None:
            status, found = _resolve(settings, self.path)
            if not isinstance(found, _Opened):
                self.send_error(status, found)
                return
            try:
                self._send(found)
            finally:
                os.close(found.fd)

        def _send(self, found: _Opened) -> None:
            kind = content_type_of(found.name)
            self.send_response(200)
            self.send_header("Content-Type", kind)
            if found.named and kind not in INLINE_TYPES:  # a PSD or TIFF opens in Photoshop
                self.send_header("Content-Disposition", content_disposition(found.name))
            self.send_header("Content-Length", str(found.size))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")  # the token stays in this page
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            left = found.size
            while left > 0:
                chunk = os.read(found.fd, min(_CHUNK, left))
                if not chunk:  # the file shrank while being sent: the client sees it cut short
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

        def do_POST(self) -> None:
            self.send_error(405, "The contact sheet is read-only")

        do_PUT = do_DELETE = do_PATCH = do_POST

    server = ShareServer(
        (settings.share_host, settings.resolved_share_port),
        Handler,
        **limits,
    )
    threading.Thread(target=server.serve_forever, daemon=True, name="contact-sheet-share").start()
    return server
