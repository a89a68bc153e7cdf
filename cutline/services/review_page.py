"""A waiting review's pictures and files over HTTP, for the retoucher's browser.

The Prefect UI cannot open local files (browsers refuse file:// links from a web page), so
each review run publishes a small page: a preview (source, cutout on a checkerboard, mask
overlay) and links to the source, AI mask, reference and layered PSD, opening only that
review's files of that job, until they expire.

Where the page lives follows the job folder. A job folder on a local disk: the page and
preview are written under the data root and served by the stack's share server under one
unguessable token (`cutline.services.share`). A job folder in a bucket: they are written
next to the job's outputs (``<job>/shared/reviews/<run>/``) and every link, the page's
own included, is a presigned URL on the studio's S3 endpoint, so a retoucher at any desk
that reaches the endpoint opens them, whichever host published the page
(`cutline.services.object_share`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from cutline.base import storage
from cutline.base.settings import CutlineSettings
from cutline.base.templates import render
from cutline.domain.items import ImageItem
from cutline.imaging.review_preview import review_preview_jpeg
from cutline.services.object_share import (
    for_file,
    for_page,
    is_object_store,
    link_seconds,
    object_file_in,
    presign,
    review_folder,
    write_pages,
)
from cutline.services.share import register_share, shareable_file


def _local(uri: str, roots: list[str]) -> str | None:
    """The real local path of a file URI or path when it lies inside one of ``roots`` (the
    shoot and the job folder); None for an object-store URI or anything elsewhere. A
    manifest's reference column is free text: without this, `/etc/shadow` as a reference (or
    a symlink to it, or a hard link to it) would be served to whoever has the review link.
    The share server checks again each time it serves the file."""
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    if not uri or "://" in uri:
        return None
    return shareable_file(uri, _local_roots(roots))


def _local_roots(roots: list[str]) -> list[str]:
    """The local folders of ``roots`` (file URIs or paths; object-store URIs left out)."""
    local = (root.removeprefix("file://") for root in roots)
    return [root for root in local if root and "://" not in root]


def _wanted_files(item: ImageItem, roots: list[str]) -> dict[str, str]:
    """The review's own files a retoucher may download, by name (source, mask, layered,
    reference) with the path or URI each was given as; a manifest's relative reference is
    taken inside the shoot."""
    shoot = roots[0] if roots else ""
    reference = item.reference
    if reference and "://" not in reference and not Path(reference).is_absolute():
        if is_object_store(shoot):
            reference = storage.join(shoot, reference)
        else:
            reference = str(Path(shoot.removeprefix("file://")) / reference)
    wanted = {
        "source": item.source,
        "mask": item.mask,
        "layered": item.psd,
        "reference": reference,
    }
    return {name: uri for name, uri in wanted.items() if uri}


def _named_files(item: ImageItem, roots: list[str]) -> dict[str, str]:
    """The review's local files the share server may serve, by the name the link uses."""
    files = {}
    for name, uri in _wanted_files(item, roots).items():
        path = _local(uri, roots)
        if path:
            suffix = PurePosixPath(path).suffix.lower().lstrip(".") or "bin"
            files[f"{name}.{suffix}"] = path
    return files


def _page_html(
    item: ImageItem, job_id: str, files: dict[str, str], preview: str, ui_run_url: str
) -> str:
    """The review page: ``files`` maps each file's name to its link, ``preview`` is the
    preview's link. Every value shown (manifest text included) is HTML-escaped."""
    return render(
        "review_page.html",
        item=item,
        job_id=job_id,
        files=files,
        preview=preview,
        ui_run_url=ui_run_url,
    )


def _preview(item: ImageItem, max_pixels: int) -> bytes:
    return review_preview_jpeg(
        storage.read_bytes(item.source),
        item.source_name,
        storage.read_bytes(item.mask),
        item.mask,
        max_pixels,
    )


def publish_review_page(
    settings: CutlineSettings,
    item: ImageItem,
    job_id: str,
    run_id: str,
    ui_run_url: str,
    max_pixels: int,
    roots: list[str],
) -> dict[str, str]:
    """Write the review's preview and page and link them, with the review's files that lie
    inside ``roots`` (the shoot folder first, then the job folder): the links by name
    ('page', 'preview', 'expires' and each file), or {} when the share cannot be made.

    A job folder in a bucket gets presigned links (see `publish_object_review_page`); a
    local one a link of the stack's share server, as before."""
    job_root = roots[1] if len(roots) > 1 else ""
    if is_object_store(job_root):
        return publish_object_review_page(
            settings, item, job_id, run_id, ui_run_url, max_pixels, roots
        )
    folder = settings.data_root / "review-pages" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preview.jpg").write_bytes(_preview(item, max_pixels))
    files = _named_files(item, roots)
    page = _page_html(item, job_id, {name: name for name in files}, "preview.jpg", ui_run_url)
    (folder / "index.html").write_text(page, "utf-8")
    link = register_share(
        settings,
        job_id,
        str(folder),
        days=settings.review_link_days,
        files=files,
        roots=_local_roots(roots),
    )
    if link is None:
        return {}
    base = link.url.rsplit("/", 1)[0]
    return {
        "page": link.url,
        "preview": f"{base}/preview.jpg",
        "expires": f"{link.expires_at:%Y-%m-%d}",
        **{name.split(".")[0]: f"{base}/{name}" for name in files},
    }


def publish_object_review_page(
    settings: CutlineSettings,
    item: ImageItem,
    job_id: str,
    run_id: str,
    ui_run_url: str,
    max_pixels: int,
    roots: list[str],
) -> dict[str, str]:
    """The review page of a job folder in a bucket: preview and page written to
    ``<job>/shared/reviews/<run>/``, and the page, the preview and the review's files in the
    bucket (inside the shoot or the job folder: a manifest's reference elsewhere is never
    linked) linked by presigned URLs valid ``CUTLINE_REVIEW_LINK_DAYS`` (at most seven
    days). Files on a local disk are left to the form, which names their paths."""
    folder = review_folder(roots[1], run_id)
    preview_uri = storage.join(folder, "preview.jpg")
    page_uri = storage.join(folder, "index.html")
    storage.write_bytes(preview_uri, _preview(item, max_pixels))
    files: dict[str, str] = {}
    for name, uri in _wanted_files(item, roots).items():
        found = object_file_in(uri, roots)
        if found and (name != "reference" or storage.exists(found)):  # free text: check it
            suffix = PurePosixPath(found).suffix.lower().lstrip(".") or "bin"
            files[f"{name}.{suffix}"] = found
    seconds = link_seconds(settings.review_link_days)
    now = datetime.now(UTC)
    names = sorted(files)
    urls = presign(
        [for_page(page_uri), for_file(preview_uri, "preview.jpg")]
        + [for_file(files[name], PurePosixPath(files[name]).name) for name in names],
        seconds,
    )
    page_url, preview_url, file_urls = urls[0], urls[1], dict(zip(names, urls[2:], strict=True))
    write_pages({page_uri: _page_html(item, job_id, file_urls, preview_url, ui_run_url)})
    return {
        "page": page_url,
        "preview": preview_url,
        "expires": f"{now + timedelta(seconds=seconds):%Y-%m-%d}",
        "expires_at": (now + timedelta(seconds=seconds)).isoformat(timespec="seconds"),
        **{name.split(".")[0]: url for name, url in file_urls.items()},
    }
