"""Reading and writing shoot files through fsspec, so local paths and URIs work alike."""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem


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


def locate(path_or_uri: str | os.PathLike[str]) -> Location:
    """Parse a local path or fsspec URI (s3://bucket/prefix, memory://...) into a Location."""
    text = os.fspath(path_or_uri)
    fs, path = url_to_fs(text)
    if isinstance(fs, LocalFileSystem):
        path = os.path.abspath(os.path.expanduser(path))
    return Location(fs, path.rstrip("/") if path != "/" else path)


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI."""
    if "://" in base:
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def read_bytes(uri: str) -> bytes:
    """Read a whole file from a local path or URI."""
    loc = locate(uri)
    return loc.fs.cat_file(loc.path)


def write_bytes(uri: str, data: bytes) -> str:
    """Write a file so that it appears complete under its final name or not at all.

    Locally the bytes go to a temporary name in the same folder and are renamed into
    place; object stores publish a PUT atomically already.
    """
    loc = locate(uri)
    if loc.is_local:
        folder = os.path.dirname(loc.path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(loc.path)}.{uuid.uuid4().hex}.part")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, loc.path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        loc.fs.pipe_file(loc.path, data)
    return loc.uri()


SIDECAR_SUFFIXES = frozenset({".csv", ".xmp", ".json", ".txt", ".md", ".yaml", ".yml", ".log"})


def list_shoot_files(root: str) -> tuple[list[str], list[str]]:
    """Split a shoot folder's files (recursively) into inputs and ignored sidecars.

    Every file is an input (and so gets a ledger row) except hidden ones (names
    starting with '.', operating-system or sync-tool clutter) and sidecars such as
    manifests and notes. A RAW or damaged file is still an input: it ends in the
    failed lane with a reason rather than vanishing. Both lists hold sorted URIs.
    """
    loc = locate(root)
    inputs: list[str] = []
    ignored: list[str] = []
    for path in loc.fs.find(loc.path):
        rel = posixpath.relpath(path.replace(os.sep, "/"), loc.path.replace(os.sep, "/"))
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        suffix = posixpath.splitext(rel)[1].lower()
        (ignored if suffix in SIDECAR_SUFFIXES else inputs).append(loc.uri(path))
    return sorted(inputs), sorted(ignored)


def relative_name(root: str, uri: str) -> str:
    """The file's path inside the shoot, with '/' separators (the ledger's identity of a file)."""
    root_loc, loc = locate(root), locate(uri)
    return posixpath.relpath(loc.path.replace(os.sep, "/"), root_loc.path.replace(os.sep, "/"))
