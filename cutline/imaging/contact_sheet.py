"""The contact sheet a producer or client signs a shoot off from: every registered asset as a
thumbnail on a checkerboard (to show the transparency) and on its channel's background;
paginated HTML plus one PNG per page.

Two audiences, two sheets: the studio's (``contact-sheet/``, linked from the sign-off form)
gives each asset's SKU, lane, state, confidence, who approved it and its source file; the
client's (``client-sheet/<sign-off>/``, one per sign-off, the only one a client link opens)
gives SKU, channels and whether it awaits sign-off or is signed off, nothing about the
studio's staff, scores or files.

Pages name their files by relative links, each in a double-quoted ``href``/``src``
attribute, and every text on them is HTML-escaped (quotes too). Sharing a sheet that lives
in a bucket relies on both: each link is swapped for a presigned URL of its file
(`cutline.services.object_share`), and no manifest text can pass for a link."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from PIL import Image, ImageDraw

from cutline.base import storage
from cutline.base.naming import safe_component
from cutline.base.templates import render
from dam_adapters import ApprovalState, AssetRecord
from dam_adapters.base import provenance
from rules.presets import PresetBook

STUDIO_SHEET = "contact-sheet"  # folder of the studio's sheet in the job folder
CLIENT_SHEET = "client-sheet"  # folder of the client's sheet (what client links open)
Audience = Literal["studio", "client"]

THUMB = 200
PER_PAGE = 24
COLUMNS = 4
_TILE_W, _TILE_H = 2 * THUMB + 30, THUMB + 78
# The pages come from cutline/templates/contact_sheet_*.html. A shared sheet's links carry
# their credential (a share token, or a presigned URL's signature): the templates' referrer
# policy keeps a click away from the sheet from handing it on in a Referer header.


def client_sheet_folder(job_root: str, sheet_id: str) -> str:
    """Where one sign-off's client sheet is written: a folder of its own under
    ``client-sheet/``, so a link a client was given keeps showing the sheet they were asked
    to sign, whatever a later sign-off (a rerun, a reopened SKU) shows. ``sheet_id`` sorts by
    time (see ``new_sheet_id``)."""
    return storage.join(job_root, CLIENT_SHEET, safe_component(sheet_id))


def new_sheet_id(run_id: str) -> str:
    """A client sheet's folder name: the UTC time it was made, then its sign-off run."""
    from datetime import UTC, datetime

    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def job_root_of_sheet(folder: str) -> str:
    """The job folder a sheet's folder is in: ``<job>/contact-sheet``, ``<job>/client-sheet``
    (a job signed off before sheets were kept per sign-off) or ``<job>/client-sheet/<id>``."""
    parent = storage.parent(folder)
    if PurePosixPath(storage.locate(parent).path).name == CLIENT_SHEET:
        return storage.parent(parent)
    return parent


def newest_client_sheet(job_root: str) -> str | None:
    """The folder of the job's newest client sheet (what a new client link opens), or None
    when its sign-off has not made one yet. A job signed off before sheets were kept per
    sign-off has its one sheet right in ``client-sheet/``."""
    root = storage.locate(storage.join(job_root, CLIENT_SHEET))
    root.fs.invalidate_cache()
    found = sorted(root.fs.glob(f"{root.path}/*/index.html"))
    if found:
        return root.uri(found[-1].rsplit("/", 1)[0])
    return root.uri(root.path) if root.fs.exists(f"{root.path}/index.html") else None


@dataclass(frozen=True)
class ContactSheet:
    """Where the sheet's pages are."""

    index: str
    html_pages: list[str]
    png_pages: list[str]
    assets: int


def lane_of(record: AssetRecord) -> str:
    """'auto' for assets the rules published, 'review' for those a person decided, before
    and after a sign-off (see dam_adapters.base.provenance)."""
    return provenance(record).lane


_DECIDED = {
    ApprovalState.AUTO_APPROVED: "approved",
    ApprovalState.APPROVED: "approved",
    ApprovalState.REPLACED: "replaced",
    ApprovalState.REJECTED: "rejected",
}


def studio_lines(record: AssetRecord) -> list[str]:
    """What the studio's sheet says of an asset: SKU, lane and state; confidence and the
    lane's decision with who took it; who signed it off; its source file."""
    made = provenance(record)
    confidence = "-" if record.confidence is None else f"{record.confidence:.2f}"
    decided = (
        f"{_DECIDED[made.decision]} by {made.decided_by or '-'}"
        if made.decision is not None
        else f"{record.approval_state.value} by {record.decided_by or '-'}"
    )
    lines = [
        f"{record.sku}  ({made.lane}, {record.approval_state.value})",
        f"confidence {confidence}  {decided}",
    ]
    if made.signed_off_by:
        lines.append(f"signed off by {made.signed_off_by}")
    return [*lines, record.source_name[:60]]


def checkerboard(size: tuple[int, int], cell: int = 10) -> Image.Image:
    board = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(board)
    for y in range(0, size[1], cell):
        for x in range((y // cell) % 2 * cell, size[0], 2 * cell):
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(204, 204, 204))
    return board


def _cutout(png: str) -> Image.Image:
    image = Image.open(io.BytesIO(storage.read_bytes(png))).convert("RGBA")
    image.thumbnail((THUMB, THUMB))
    return image


def _on(background: Image.Image, cutout: Image.Image) -> Image.Image:
    out = background.copy()
    out.paste(cutout, ((THUMB - cutout.width) // 2, (THUMB - cutout.height) // 2), cutout)
    return out


def _thumbnails(
    record: AssetRecord, png: str, presets: PresetBook
) -> tuple[Image.Image, Image.Image]:
    cutout = _cutout(png)
    channel = next((c for c in record.channels if c in presets.presets), None)
    colour = presets.presets[channel].background_rgb if channel else (255, 255, 255)
    return (
        _on(checkerboard((THUMB, THUMB)), cutout),
        _on(Image.new("RGB", (THUMB, THUMB), colour), cutout),
    )


def _client_state(record: AssetRecord) -> str:
    """An asset's state as the client reads it."""
    signed = record.approval_state == ApprovalState.SIGNED_OFF
    return "signed off" if signed else "for your sign-off"


def _caption(record: AssetRecord, audience: Audience) -> list[str]:
    if audience == "client":
        channels = ", ".join(record.channels) or "-"
        return [record.sku, f"channels: {channels}", _client_state(record)]
    return studio_lines(record)


def _page_png(
    tiles: list[tuple[AssetRecord, Image.Image, Image.Image]], title: str, audience: Audience
) -> bytes:
    rows = max(1, -(-len(tiles) // COLUMNS))
    page = Image.new("RGB", (COLUMNS * _TILE_W + 20, rows * _TILE_H + 50), (250, 250, 250))
    draw = ImageDraw.Draw(page)
    draw.text((12, 12), title, fill=(0, 0, 0))
    for n, (record, checker, channel) in enumerate(tiles):
        x, y = 10 + (n % COLUMNS) * _TILE_W, 40 + (n // COLUMNS) * _TILE_H
        page.paste(checker, (x, y))
        page.paste(channel, (x + THUMB + 10, y))
        for line, text in enumerate(_caption(record, audience)):
            draw.text((x, y + THUMB + 6 + 14 * line), text, fill=(20, 20, 20))
    buf = io.BytesIO()
    page.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _page_html(
    job_id: str,
    number: int,
    pages: int,
    rows: list[tuple[AssetRecord, str, str]],
    audience: Audience,
) -> str:
    return render(
        "contact_sheet_page.html",
        job_id=job_id,
        number=number,
        pages=pages,
        rows=[
            {"checker": checker, "channel": channel, "caption": _caption(record, audience)}
            for record, checker, channel in rows
        ],
    )


def _state_counts(records: list[AssetRecord], audience: Audience = "studio") -> str:
    counts: dict[str, int] = {}
    for record in records:
        state = _client_state(record) if audience == "client" else record.approval_state.value
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))  # escaped by the page


def build_contact_sheet(
    records: list[AssetRecord],
    job_id: str,
    folder: str,
    presets: PresetBook,
    png_for: Callable[[AssetRecord], str | None],
    audience: Audience = "studio",
) -> ContactSheet:
    """Write the sheet of ``records`` (auto, approved and rejected assets) into ``folder``,
    with the captions of ``audience`` (see the module docstring).

    Thumbnails come from ``png_for(record)``: Cutline's own cutout of that asset, never a URL
    the DAM returned (which could point at local files or internal hosts); records without
    one are left off the sheet."""
    pngs = {r.dam_id: png for r in records if (png := png_for(r))}
    shown = sorted((r for r in records if r.dam_id in pngs), key=lambda r: (r.sku, r.source_name))
    pages = max(1, -(-len(shown) // PER_PAGE))
    html_pages, png_pages = [], []
    for number in range(1, pages + 1):
        chunk = shown[(number - 1) * PER_PAGE : number * PER_PAGE]
        tiles, rows = [], []
        for record in chunk:
            checker, channel = _thumbnails(record, pngs[record.dam_id], presets)
            stem = safe_component(f"{record.sku}-{record.dam_id}")
            names = (f"thumbs/{stem}.checker.png", f"thumbs/{stem}.channel.png")
            for name, image in zip(names, (checker, channel), strict=True):
                buf = io.BytesIO()
                image.save(buf, format="PNG", compress_level=6)
                storage.write_bytes(storage.join(folder, name), buf.getvalue())
            tiles.append((record, checker, channel))
            rows.append((record, *names))
        title = f"Shoot {job_id}: contact sheet page {number} of {pages} ({len(shown)} assets)"
        png_pages.append(
            storage.write_bytes(
                storage.join(folder, f"page-{number:03d}.png"), _page_png(tiles, title, audience)
            )
        )
        html_pages.append(
            storage.write_bytes(
                storage.join(folder, f"page-{number:03d}.html"),
                _page_html(job_id, number, pages, rows, audience).encode("utf-8"),
            )
        )
    left_off = [r for r in records if r.dam_id not in pngs]
    index = render(
        "contact_sheet_index.html",
        job_id=job_id,
        client=audience == "client",
        shown=len(shown),
        total=len(records),
        shown_counts=_state_counts(shown, audience),
        left_off=len(left_off),
        left_off_counts=_state_counts(left_off),
        pages=pages,
    )
    return ContactSheet(
        index=storage.write_bytes(storage.join(folder, "index.html"), index.encode("utf-8")),
        html_pages=html_pages,
        png_pages=png_pages,
        assets=len(shown),
    )
