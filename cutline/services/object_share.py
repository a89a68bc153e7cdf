"""Read-only links to a job's pages and files on object storage: presigned URLs.

A job folder in a bucket needs no link server: every page and picture a link opens is an
object of the job, and the link is a presigned GET URL of it (signed with the studio's S3
key, on the S3 endpoint the studio configured, ``CUTLINE_S3_ENDPOINT_URL``), which any desk
that reaches that endpoint can open. Nothing is kept on the host that issued it.

Each link opens a folder of its own under ``<job>/shared/``: a contact sheet's link a copy
of the sheet (``shared/sheets/<link>/``), a review's link its page and preview
(``shared/reviews/<run>/``). A page in a bucket cannot use relative links to private
objects, so each shared page is written with every link and picture in it presigned too.
Revoking deletes ``<job>/shared/``: every page, picture and copied file of every link then
answers 404. A review's own files (source, AI mask, PSD, reference) are presigned where
they are and stay readable until their links expire.

S3 refuses presigned URLs valid longer than seven days (SigV4), so a link lives for its
setting's days or seven days, whichever is shorter; URLs signed with temporary credentials
(an assumed role, STS) stop working when those credentials expire, whichever is sooner.
"""

from __future__ import annotations

import asyncio
import html
import json
import mimetypes
import re
import secrets
import unicodedata
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from fsspec.asyn import sync

from cutline.base import storage
from cutline.domain.items import validate_job_id
from cutline.imaging.contact_sheet import job_root_of_sheet, newest_client_sheet

MAX_LINK_SECONDS = 7 * 24 * 3600  # SigV4: S3 refuses a presigned URL valid any longer
SHARED = "shared"  # under the job folder: everything a link opens, and nothing else
_SHEET_FILE = re.compile(r"^(thumbs/)?[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(html|png|jpg)$")
_LINK_ATTRIBUTE = re.compile(r"""(\s(?:href|src)=)(["'])([^"'<>]*)\2""")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TYPES = {".psd": "image/vnd.adobe.photoshop", ".tif": "image/tiff", ".tiff": "image/tiff"}
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}  # shown in a page
PAGE_TYPE = "text/html; charset=utf-8"


def is_object_store(uri: str) -> bool:
    """Whether ``uri`` names object storage (``s3://...``), not a local path or file URI."""
    return "://" in uri and storage.protocol_of(uri) != "file"


def link_seconds(days: float) -> int:
    """How long a presigned link issued for ``days`` lives: those days, at most seven."""
    return max(1, min(MAX_LINK_SECONDS, int(days * 86400)))


@dataclass(frozen=True)
class Signed:
    """One object to link: its URI and how its link answers (content type, and the file
    name it downloads as, for what a browser must not show inline)."""

    uri: str
    content_type: str
    download_as: str = ""


def for_page(uri: str) -> Signed:
    """A page Cutline wrote, shown as HTML."""
    return Signed(uri, PAGE_TYPE)


def for_file(uri: str, name: str) -> Signed:
    """A picture or file, answered with the type of its name: a picture (PNG, JPEG, GIF,
    WebP) shows inline; anything else (a PSD, a TIFF, an HTML or SVG file a manifest names as
    reference) downloads as ``name``, so no file of a shoot ever runs as a page."""
    kind = content_type_of(name)
    if kind in INLINE_TYPES:
        return Signed(uri, kind)
    return Signed(uri, kind, content_disposition(name))


def content_type_of(name: str) -> str:
    """The content type a file is answered with, from its name."""
    suffix = PurePosixPath(name).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def content_disposition(name: str) -> str:
    """``attachment`` with a file's own name: an ASCII fallback and, when the name is not
    plain ASCII, RFC 6266's ``filename*`` (control and direction characters and separators
    dropped, so the header holds nothing the file's name does not)."""
    name = "".join(
        ch
        for ch in unicodedata.normalize("NFC", name)
        if unicodedata.category(ch)[0] not in "CZ" or ch == " "
        if ch not in "/\\"
    ).strip()
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    plain = re.sub(r"[^A-Za-z0-9._ -]", "_", plain).strip(" .") or "download"
    header = f'attachment; filename="{plain}"'
    if name and name != plain:
        header += f"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    return header


def presign(objects: list[Signed], seconds: int) -> list[str]:
    """Presigned GET URLs of ``objects`` (all on one object store), valid ``seconds``: on
    the endpoint the studio configured for S3, answering with each object's content type
    (S3 would otherwise answer with whatever type the object was stored with)."""
    if not objects:
        return []
    fs = storage.locate(objects[0].uri).fs
    if not hasattr(fs, "_url"):
        raise ValueError(
            f"links to {storage.protocol_of(objects[0].uri)}:// storage cannot be presigned; "
            "put the job folder on S3 (or a local disk) to share its pages"
        )

    async def sign_all() -> list[str]:
        async def one(item: Signed) -> str:
            path = fs._strip_protocol(item.uri)
            params = {"ResponseContentType": item.content_type}
            if item.download_as:
                params["ResponseContentDisposition"] = item.download_as
            return await fs._url(path, expires=seconds, **params)

        return list(await asyncio.gather(*map(one, objects)))

    return sync(fs.loop, sign_all)


def write_pages(pages: dict[str, str]) -> None:
    """Write HTML pages (URI -> text) to the object store, typed as HTML."""
    if pages:
        fs = storage.locate(next(iter(pages))).fs
        fs.pipe(
            {storage.locate(uri).path: text.encode("utf-8") for uri, text in pages.items()},
            ContentType=PAGE_TYPE,
        )


def object_file_in(uri: str, roots: list[str]) -> str | None:
    """The canonical URI of ``uri`` when it is an object inside one of the object-store
    folders ``roots`` (the shoot's and the job's); None otherwise. A manifest's reference is
    free text: another bucket, another job, or a key climbing out with ``..`` is never
    linked (browsers resolve ``..`` in a URL, so such a key is refused, not just
    normalised)."""
    if not is_object_store(uri):
        return None
    location = storage.locate(uri)
    canonical = location.uri()
    for root in roots:
        if not is_object_store(root):
            continue
        base = storage.locate(root).uri().rstrip("/") + "/"
        if canonical.startswith(base):
            inner = canonical[len(base) :].split("/")
            if all(part not in {"", ".", ".."} for part in inner):
                return canonical
    return None


def shared_root(job_root: str) -> str:
    """The folder of a job holding everything its links open."""
    return storage.join(job_root, SHARED)


def review_folder(job_root: str, run_id: str) -> str:
    """Where a review run's page and preview are written for its link."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"not a review run id: {run_id!r}")
    return storage.join(shared_root(job_root), "reviews", run_id)


def _links_in(text: str) -> set[str]:
    """The files of a contact sheet that a page of it links or shows (relative names)."""
    found = {html.unescape(match[3]) for match in _LINK_ATTRIBUTE.finditer(text)}
    return {name for name in found if _SHEET_FILE.match(name) and ".." not in name}


def _relinked(text: str, urls: dict[str, str]) -> str:
    """A page with every link and picture that names a file in ``urls`` pointing at its
    presigned URL instead. Only attributes are rewritten: every text on Cutline's pages is
    HTML-escaped, quotes included, so no text can pass for an attribute."""

    def swap(match: re.Match[str]) -> str:
        url = urls.get(html.unescape(match[3]))
        return match[0] if url is None else f'{match[1]}"{html.escape(url, quote=True)}"'

    return _LINK_ATTRIBUTE.sub(swap, text)


def _read_sheet(folder: str) -> dict[str, str]:
    """Every page of the contact sheet in ``folder`` reachable from its index (name ->
    text): pages left over from an older, longer sheet are not shared."""
    fs = storage.locate(folder).fs
    pages: dict[str, str] = {}
    wanted = {"index.html"}
    while wanted:
        read = fs.cat([storage.locate(storage.join(folder, name)).path for name in wanted])
        for name in wanted:
            pages[name] = read[storage.locate(storage.join(folder, name)).path].decode("utf-8")
        wanted = {
            name
            for text in pages.values()
            for name in _links_in(text)
            if name.endswith(".html") and name not in pages
        }
    return pages


@dataclass(frozen=True)
class ObjectLink:
    """A presigned link as issued: its URL and when it stops working."""

    url: str
    expires_at: datetime


def share_sheet(job_id: str, folder: str, days: float, now: datetime | None = None) -> ObjectLink:
    """A new link to the contact sheet in ``folder`` (a sheet folder of ``<job>`` in a bucket,
    see ``job_root_of_sheet``):
    a copy of it under ``<job>/shared/sheets/<link>/`` whose pages link and show their
    files by presigned URLs, valid ``days`` (at most seven). The job's expired sheet links
    are removed first."""
    validate_job_id(job_id)
    job_root = job_root_of_sheet(folder)
    if PurePosixPath(storage.locate(job_root).path).name != job_id:
        raise ValueError(f"{folder} is not a contact sheet of job {job_id}")
    now = now or datetime.now(UTC)
    forget_expired_sheets(job_root, now)
    seconds = link_seconds(days)
    link_id = f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(6)}"
    dest = storage.join(shared_root(job_root), "sheets", link_id)
    pages = _read_sheet(folder)
    files = sorted({name for text in pages.values() for name in _links_in(text)} - set(pages))
    fs = storage.locate(folder).fs
    if files:  # copied within the store: the bytes never pass through this host
        fs.copy(
            [storage.locate(storage.join(folder, name)).path for name in files],
            [storage.locate(storage.join(dest, name)).path for name in files],
        )
    names = sorted(pages) + files
    signed = [
        for_page(storage.join(dest, name))
        if name.endswith(".html")
        else for_file(storage.join(dest, name), PurePosixPath(name).name)
        for name in names
    ]
    urls = dict(zip(names, presign(signed, seconds), strict=True))
    write_pages({storage.join(dest, name): _relinked(text, urls) for name, text in pages.items()})
    expires_at = now + timedelta(seconds=seconds)
    grant = {
        "job_id": job_id,
        "kind": "contact-sheet",
        "folder": storage.locate(folder).uri(),
        "created_at": now.isoformat(),
        "expires_at": expires_at.isoformat(),
    }
    storage.write_bytes(storage.join(dest, "grant.json"), json.dumps(grant).encode())
    return ObjectLink(urls["index.html"], expires_at)


def _links_of(job_root: str, kind: str, marker: str) -> list[str]:
    """The folders of a job's links of one kind ('sheets', 'reviews'), each found by the
    file every such link has (``marker``); oldest first for sheets (named by issue time).
    Folders emptied by a removal (some stores keep them) are no links."""
    location = storage.locate(storage.join(shared_root(job_root), kind))
    location.fs.invalidate_cache()
    found = location.fs.glob(f"{location.path}/*/{marker}")
    return sorted(location.uri(str(PurePosixPath(path).parent)) for path in found)


def forget_expired_sheets(job_root: str, now: datetime | None = None) -> int:
    """Remove the copies behind a job's expired contact-sheet links; how many."""
    now = now or datetime.now(UTC)
    gone = 0
    for link in _links_of(job_root, "sheets", "grant.json"):
        try:
            grant = json.loads(storage.read_bytes(storage.join(link, "grant.json")))
            expired = datetime.fromisoformat(grant["expires_at"]) <= now
        except (OSError, ValueError, KeyError):
            continue  # being written right now, or not Cutline's: left alone
        if expired:
            location = storage.locate(link)
            location.fs.rm(location.path, recursive=True)
            gone += 1
    return gone


def renew_sheet(job_id: str, output_root: str, days: float) -> ObjectLink:
    """A new link to the job's contact sheet in a bucket (where its sign-off builds it);
    older links keep their own expiry."""
    job_root = storage.join(output_root.rstrip("/"), validate_job_id(job_id))
    folder = newest_client_sheet(job_root)  # the client's sheet, never the studio's
    if folder is None:
        raise LookupError(
            f"shoot {job_id} has no contact sheet in {output_root} yet: it is made when its "
            "sign-off is requested (after the shoot run); check --out"
        )
    return share_sheet(job_id, folder, days)


def revoke_job(job_id: str, output_root: str) -> int:
    """End every link of a job in a bucket at once (contact sheets and review pages) by
    deleting what they open; how many links there were."""
    job_root = storage.join(output_root.rstrip("/"), validate_job_id(job_id))
    count = len(_links_of(job_root, "sheets", "grant.json"))
    count += len(_links_of(job_root, "reviews", "index.html"))
    location = storage.locate(shared_root(job_root))
    if location.fs.exists(location.path):
        location.fs.rm(location.path, recursive=True)
    return count
