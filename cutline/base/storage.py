"""Reading and writing shoot files through fsspec, so local paths and URIs work alike."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import posixpath
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from cutline.base.errors import ImageInputError, StorageFullError, StorageUnwritableError
from cutline.base.settings import get_settings

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


@dataclass(frozen=True)
class Location:
    """A filesystem plus a path on it, parsed once from a user-given path or URI."""

    fs: fsspec.AbstractFileSystem
    path: str

    @property
    def is_local(self) -> bool:
        """Whether this location is on the local disk."""
        return isinstance(self.fs, LocalFileSystem)

    def uri(self, path: str | None = None) -> str:
        """The user-facing URI of ``path`` (default: this location)."""
        p = self.path if path is None else path
        return p if self.is_local else self.fs.unstrip_protocol(p)


def storage_options(protocol: str) -> dict[str, Any]:
    """fsspec options for a protocol from settings; empty values defer to the AWS environment."""
    if protocol not in {"s3", "s3a"}:
        return {}
    settings = get_settings()
    options: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    if settings.s3_endpoint_url:
        client_kwargs["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_region:
        client_kwargs["region_name"] = settings.s3_region
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        options["key"] = settings.s3_access_key_id.get_secret_value()
        options["secret"] = settings.s3_secret_access_key.get_secret_value()
    if settings.s3_profile:
        options["profile"] = settings.s3_profile
    options["config_kwargs"] = {
        "retries": {"max_attempts": settings.storage_max_attempts, "mode": "standard"}
    }
    return options


def protocol_of(path_or_uri: str) -> str:
    """'s3', 'memory', ... for a URI; 'file' for a local path."""
    return path_or_uri.split("://", 1)[0].lower() if "://" in path_or_uri else "file"


def locate(path_or_uri: str | os.PathLike[str]) -> Location:
    """Parse a local path or fsspec URI (s3://bucket/prefix, memory://...) into a Location."""
    text = os.fspath(path_or_uri)
    fs, path = url_to_fs(text, **storage_options(protocol_of(text)))
    if isinstance(fs, LocalFileSystem):
        path = os.path.abspath(os.path.expanduser(path))
    return Location(fs, path.rstrip("/") if path != "/" else path)


def real_uri(path_or_uri: str) -> str:
    """The URI of a location with local symlinks resolved, for comparing two locations."""
    loc = locate(path_or_uri)
    return os.path.realpath(loc.path) if loc.is_local else loc.uri()


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI."""
    if "://" in base:
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def exists(uri: str) -> bool:
    """Whether a file or folder exists at a local path or URI."""
    loc = locate(uri)
    return bool(loc.fs.exists(loc.path))


def parent(uri: str) -> str:
    """The folder containing a local path or URI."""
    if "://" in uri:
        return uri.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(uri))


def read_bytes(uri: str) -> bytes:
    """Read a whole file from a local path or URI."""
    loc = locate(uri)
    return loc.fs.cat_file(loc.path)


def write_bytes(uri: str, data: bytes) -> str:
    """Write a file so that it appears complete under its final name or not at all."""
    with open_for_writing(uri) as fh:
        fh.write(data)
    return locate(uri).uri()


@contextlib.contextmanager
def open_for_writing(uri: str) -> Iterator[BinaryIO]:
    """A binary stream whose content appears under ``uri`` only once it is complete.

    Locally the bytes go to a temporary name in the same folder and are renamed into
    place when the block ends without error (the temporary file is removed otherwise);
    for object stores the bytes are buffered and PUT whole when the block ends without
    error. A full disk raises StorageFullError, a read-only or forbidden folder
    StorageUnwritableError; each says what to do.
    """
    loc = locate(uri)
    if not loc.is_local:
        buffer = io.BytesIO()
        yield buffer
        loc.fs.pipe_file(loc.path, buffer.getvalue())
        return
    folder = os.path.dirname(loc.path)
    tmp = os.path.join(folder, f".{os.path.basename(loc.path)}.{uuid.uuid4().hex}.part")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as fh:
            yield fh
        os.replace(tmp, loc.path)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise StorageFullError(
                f"No space left on the output storage writing {loc.path}; nothing was left "
                "under that name.",
                hint="Free space there (or point CUTLINE_OUTPUT_ROOT at a larger disk) and "
                "rerun the job; finished images are kept.",
            ) from exc
        if exc.errno in _NOT_WRITABLE:
            raise StorageUnwritableError(
                f"The output storage refuses writes at {folder} ({exc.strerror}).",
                hint="Make that folder writable (or point CUTLINE_OUTPUT_ROOT elsewhere) and "
                "rerun the job; finished images are kept.",
            ) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


SIDECAR_SUFFIXES = frozenset({".csv", ".xmp", ".json", ".txt", ".md", ".yaml", ".yml", ".log"})


def list_shoot_files(root: str) -> tuple[list[str], list[str]]:
    """Split a shoot folder's files (recursively) into inputs and ignored sidecars.

    Every file is an input (and so gets a ledger row) except hidden ones (a name or folder
    starting with '.': operating-system or sync-tool clutter, a retoucher's working folder)
    and sidecars such as manifests and notes; those are returned as ignored, so the summary
    lists them and none vanishes unseen. A RAW or damaged file is still an input: it ends in
    the failed lane with a reason rather than vanishing. Both lists hold sorted URIs.
    """
    loc = locate(root)
    inputs: list[str] = []
    ignored: list[str] = []
    for path in loc.fs.find(loc.path):
        rel = posixpath.relpath(path.replace(os.sep, "/"), loc.path.replace(os.sep, "/"))
        hidden = any(part.startswith(".") for part in rel.split("/"))
        suffix = posixpath.splitext(rel)[1].lower()
        (ignored if hidden or suffix in SIDECAR_SUFFIXES else inputs).append(loc.uri(path))
    return sorted(inputs), sorted(ignored)


def require_regular_file(uri: str, name: str) -> None:
    """Refuse, without opening it, a local input that is not a regular file once symlinks are
    followed: reading a FIFO blocks for ever, a device such as /dev/zero never ends."""
    loc = locate(uri)
    if not loc.is_local:
        return
    try:
        mode = os.stat(loc.path).st_mode
    except FileNotFoundError:
        if os.path.islink(loc.path):
            raise ImageInputError(
                name,
                f"is a link to {os.readlink(loc.path)!r}, which does not exist (a dangling "
                "link: the file it pointed to was moved, deleted or is on a disk not mounted).",
                hint="Mount that disk or copy the real file into the shoot folder, then rerun "
                "the job.",
            ) from None
        return  # the read that follows says the file does not exist
    except OSError as exc:
        raise ImageInputError(name, f"cannot be read ({exc.strerror}).") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a file"
        )
        raise ImageInputError(
            name,
            f"is {kind}, not a regular file; only image files are processed.",
            hint="Remove it from the shoot folder.",
        )


def relative_name(root: str, uri: str) -> str:
    """The file's path inside the shoot, with '/' separators (the ledger's identity of a file)."""
    root_loc, loc = locate(root), locate(uri)
    return posixpath.relpath(loc.path.replace(os.sep, "/"), root_loc.path.replace(os.sep, "/"))


def replaced_while_read(exc: BaseException) -> bool:
    """True when a streamed read failed because the object was rewritten under it: S3 answers
    the next range of an object whose ETag changed since it was opened with "precondition
    failed" (s3fs raises FileExpired). A local file replaced by rename never does this: the open
    handle keeps the old file. The caller reopens and reads the new version."""
    from s3fs.utils import FileExpired

    return isinstance(exc, FileExpired)
