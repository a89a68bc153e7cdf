"""A waiting review's pictures and files over HTTP, for the retoucher's browser.

The Prefect UI cannot open local files (browsers refuse file:// links from a web page), so
each review run publishes a small page through the stack's share server: a preview (source,
cutout on a checkerboard, mask overlay) and the source, AI mask, reference and layered PSD
under one unguessable, expiring token that opens only those files of that job."""

from __future__ import annotations

import html
from pathlib import Path, PurePosixPath

from cutline.base import storage
from cutline.base.settings import CutlineSettings
from cutline.domain.items import ImageItem
from cutline.imaging.review_preview import review_preview_jpeg
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


def _named_files(item: ImageItem, roots: list[str]) -> dict[str, str]:
    """The review's own files a retoucher may download, by the name the link uses."""
    shoot = Path(roots[0].removeprefix("file://")) if roots else Path()
    reference = item.reference
    if reference and "://" not in reference and not Path(reference).is_absolute():
        reference = str(shoot / reference)  # a manifest names references in the shoot
    wanted = {
        "source": item.source,
        "mask": item.mask,
        "layered": item.psd,
        "reference": reference,
    }
    files = {}
    for name, uri in wanted.items():
        path = _local(uri or "", roots)
        if path:
            suffix = PurePosixPath(path).suffix.lower().lstrip(".") or "bin"
            files[f"{name}.{suffix}"] = path
    return files


def _page_html(item: ImageItem, job_id: str, files: dict[str, str], ui_run_url: str) -> str:
    esc = html.escape
    links = " · ".join(f'<a href="{esc(name)}">{esc(name)}</a>' for name in sorted(files))
    return (
        "<!doctype html><meta charset='utf-8'><title>Review "
        f"{esc(item.sku)}</title><body style='font-family:sans-serif'>"
        f"<h2>Review {esc(item.sku)} · {esc(item.category or 'no category')} · job {esc(job_id)}</h2>"
        f"<p><b>Why:</b> {esc(item.reasons)}<br><b>Deadline:</b> {esc(item.deadline or 'none')}"
        f"<br><b>Brief:</b> {esc(item.brief or '(no brief)')}</p>"
        "<img src='preview.jpg' alt='source, cutout on checkerboard, mask overlay' "
        "style='max-width:100%'>"
        f"<p>Files: {links or '(on the object store only)'}</p>"
        f"<p>Decide in the Prefect UI: <a href='{esc(ui_run_url)}'>{esc(ui_run_url)}</a> "
        "(Resume).</p></body>"
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
    """Write the review's preview and page under the data root and share them, with the
    review's files that lie inside ``roots`` (the shoot folder first, then the job folder);
    the links by name ('page', 'preview' and each file), or {} when the share cannot be made."""
    folder = settings.data_root / "review-pages" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    preview = review_preview_jpeg(
        storage.read_bytes(item.source),
        item.source_name,
        storage.read_bytes(item.mask),
        item.mask,
        max_pixels,
    )
    (folder / "preview.jpg").write_bytes(preview)
    files = _named_files(item, roots)
    (folder / "index.html").write_text(_page_html(item, job_id, files, ui_run_url), "utf-8")
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
