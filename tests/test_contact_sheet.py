"""The contact sheet a producer signs off from: every auto and approved asset, paginated,
as HTML pages and PNG pages, with SKU, lane, confidence and who approved it."""

from __future__ import annotations

import html
from pathlib import Path

from PIL import Image

from cutline.base.settings import DEFAULT_PRESETS_FILE
from cutline.imaging import contact_sheet
from cutline.imaging.contact_sheet import build_contact_sheet
from dam_adapters import ApprovalState, AssetSubmission
from dam_adapters.local_catalog import LocalCatalog
from rules.presets import load_presets


def _register(catalog: LocalCatalog, tmp_path: Path, n: int, state: ApprovalState, by: str):
    png = tmp_path / f"cut-{n}.png"
    image = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    image.paste((200, 40 + n, 40, 255), (30, 20, 90, 70))
    image.save(png)
    return catalog.register(
        AssetSubmission(
            job_id="SIGN-1",
            sku=f"SKU-{n:03d}",
            category="homeware",
            channels=["social"] if n % 2 else ["web"],
            source=f"/shoot/{n}.jpg",
            source_name=f"{n}.jpg",
            content_hash=f"{n:064x}",
            approval_state=state,
            approved_by=by,
            confidence=0.5 + n / 100,
            renditions={"png": str(png)},
        )
    )


def test_sheet_lists_every_auto_and_approved_asset_on_paginated_pages(tmp_path, monkeypatch):
    monkeypatch.setattr(contact_sheet, "PER_PAGE", 4)
    catalog = LocalCatalog(tmp_path / "catalog")
    for n in range(7):
        _register(catalog, tmp_path, n, ApprovalState.AUTO_APPROVED, "cutline-auto")
    _register(catalog, tmp_path, 7, ApprovalState.APPROVED, "Ana <retouch>")
    records = catalog.list_job("SIGN-1")
    sheet = build_contact_sheet(
        records,
        "SIGN-1",
        str(tmp_path / "sheet"),
        load_presets(DEFAULT_PRESETS_FILE),
        lambda record: record.renditions.get("png"),  # the test's own files
    )
    assert sheet.assets == 8 and len(sheet.html_pages) == 2 and len(sheet.png_pages) == 2
    pages = "".join(Path(p).read_text() for p in sheet.html_pages)
    for n in range(8):
        assert f"SKU-{n:03d}" in pages
    assert html.escape("Ana <retouch>") in pages and "<retouch>" not in pages
    assert "(review, approved)" in pages and "(auto, auto-approved)" in pages
    assert "confidence 0.57" in pages
    for page in sheet.png_pages:
        assert Image.open(page).format == "PNG"
    index = Path(sheet.index).read_text()
    assert "8 assets" in index and "page-002.html" in index
    thumbs = sorted((tmp_path / "sheet" / "thumbs").glob("*.png"))
    assert len(thumbs) == 16  # on a checkerboard and on the channel background
    channel = Image.open(next(t for t in thumbs if "SKU-001" in t.name and "channel" in t.name))
    assert channel.getpixel((2, 2)) == (0xF2, 0xF2, 0xF2)  # the social preset's background


def test_the_sheet_never_fetches_a_rendition_url_the_dam_returned(tmp_path):
    """A hostile DAM answers with file:// and loopback URLs: the sheet takes each thumbnail
    from Cutline's own cutout (by source and content, from the job's ledger) and leaves off an
    asset it has no cutout of, instead of reading whatever the URL names."""
    from cutline.domain.items import ImageItem, JobLayout
    from cutline.records.ledger import own_cutouts, write_ledger
    from rules.engine import Lane

    catalog = LocalCatalog(tmp_path / "catalog")
    ours = _register(catalog, tmp_path, 1, ApprovalState.AUTO_APPROVED, "cutline-auto")
    theirs = _register(catalog, tmp_path, 2, ApprovalState.AUTO_APPROVED, "cutline-auto")
    hostile = {
        ours.dam_id: "file:///etc/shadow",
        theirs.dam_id: "http://127.0.0.1:9/internal.png",
    }
    records = [
        r.model_copy(update={"renditions": {"png": hostile[r.dam_id]}}) for r in (ours, theirs)
    ]
    layout = JobLayout.for_job(str(tmp_path / "out"), "SIGN-1")
    inside = Path(layout.root) / "png" / "one.png"
    inside.parent.mkdir(parents=True)
    Image.open(tmp_path / "cut-1.png").save(inside)
    items = [
        ImageItem(
            index=0,
            source="/shoot/1.jpg",
            source_name="1.jpg",
            image_id="1",
            sha256=ours.content_hash,
            lane=Lane.AUTO,
            reasons="ok",
            png=str(inside),
        ),
        # Its PNG is outside the job folder: not ours, so never read either.
        ImageItem(
            index=1,
            source="/shoot/2.jpg",
            source_name="2.jpg",
            image_id="2",
            sha256=theirs.content_hash,
            lane=Lane.AUTO,
            reasons="ok",
            png="/etc/passwd",
        ),
    ]
    write_ledger(items, layout)
    cutouts = own_cutouts(layout)
    assert cutouts == {("1.jpg", ours.content_hash): str(inside)}
    sheet = build_contact_sheet(
        records,
        "SIGN-1",
        str(tmp_path / "sheet"),
        load_presets(DEFAULT_PRESETS_FILE),
        lambda record: cutouts.get((record.source_name, record.content_hash)),
    )
    assert sheet.assets == 1
    page = Path(sheet.html_pages[0]).read_text()
    assert "SKU-001" in page and "SKU-002" not in page
    index = Path(sheet.index).read_text()  # the sheet still counts what it leaves off
    assert "1 of 2 assets" in index and "Not on the sheet" in index


def test_the_clients_sheet_shows_the_pictures_without_the_studios_internals(tmp_path):
    """A client sees SKU, channels and whether an asset awaits sign-off: not the confidence,
    the lane, who approved it, the rejected count or the photographer's file names."""
    catalog = LocalCatalog(tmp_path / "catalog")
    _register(catalog, tmp_path, 1, ApprovalState.AUTO_APPROVED, "cutline-auto")
    _register(catalog, tmp_path, 2, ApprovalState.APPROVED, "Ana Retoucher")
    _register(catalog, tmp_path, 3, ApprovalState.SIGNED_OFF, "Pat Producer")
    rejected = _register(catalog, tmp_path, 4, ApprovalState.REJECTED, "Bo Retoucher")
    records = catalog.list_job("SIGN-1")
    sheet = build_contact_sheet(
        records,
        "SIGN-1",
        str(tmp_path / "client"),
        load_presets(DEFAULT_PRESETS_FILE),
        lambda r: None if r.dam_id == rejected.dam_id else r.renditions.get("png"),
        "client",
    )
    pages = "".join(Path(p).read_text() for p in [sheet.index, *sheet.html_pages])
    assert all(f"SKU-{n:03d}" in pages for n in (1, 2, 3)) and "SKU-004" not in pages
    assert "channels: social" in pages and "channels: web" in pages
    assert "for your sign-off: 2" in pages and "signed off: 1" in pages
    for internal in (
        "confidence",
        "0.51",
        "cutline-auto",
        "Ana Retoucher",
        "Pat Producer",
        "auto-approved",
        "(review",
        "1.jpg",
        "rejected",
        "Not on the sheet",
    ):
        assert internal not in pages, internal
    assert len(list(Path(tmp_path / "client" / "thumbs").glob("*.png"))) == 6


def test_a_sheet_made_after_a_signoff_keeps_each_assets_lane_decision_and_decider(tmp_path):
    """Issue 30 (1): a sign-off makes the producer the record's decider; a later sheet (a
    rerun, a reopened SKU) still says which assets the rules published and which a
    retoucher approved or replaced, and by whom, beside who signed them off."""
    from dam_adapters.base import provenance

    catalog = LocalCatalog(tmp_path / "catalog")
    auto = _register(catalog, tmp_path, 0, ApprovalState.AUTO_APPROVED, "cutline-auto")
    kept = _register(catalog, tmp_path, 1, ApprovalState.APPROVED, "Ana Retoucher")
    own = _register(catalog, tmp_path, 2, ApprovalState.REPLACED, "Ben Retoucher")
    for record in (auto, kept, own):
        catalog.update_approval(record.dam_id, ApprovalState.SIGNED_OFF, by="Pat Producer")
    records = {r.sku: r for r in catalog.list_job("SIGN-1")}
    assert {r.approval_state for r in records.values()} == {ApprovalState.SIGNED_OFF}
    made = {sku: provenance(r) for sku, r in records.items()}
    assert (made["SKU-000"].lane, made["SKU-000"].decision) == ("auto", "auto-approved")
    assert (made["SKU-001"].lane, made["SKU-001"].decided_by) == ("review", "Ana Retoucher")
    assert (made["SKU-002"].decision, made["SKU-002"].decided_by) == ("replaced", "Ben Retoucher")
    assert {m.signed_off_by for m in made.values()} == {"Pat Producer"}
    # Sent back: undecided again, in the review lane; the sign-off is no longer current.
    back = catalog.update_approval(
        records["SKU-000"].dam_id, ApprovalState.SENT_BACK, by="Pat Producer", note="crop"
    )
    assert provenance(back).decision is None and provenance(back).signed_off_by == ""

    sheet = build_contact_sheet(
        list(records.values()),
        "SIGN-1",
        str(tmp_path / "sheet"),
        load_presets(DEFAULT_PRESETS_FILE),
        lambda record: record.renditions.get("png"),
    )
    page = html.unescape(Path(sheet.html_pages[0]).read_text())
    assert "SKU-000  (auto, signed-off)" in page and "approved by cutline-auto" in page
    assert "SKU-001  (review, signed-off)" in page and "approved by Ana Retoucher" in page
    assert "SKU-002  (review, signed-off)" in page and "replaced by Ben Retoucher" in page
    assert page.count("signed off by Pat Producer") == 3
    assert "approved by Pat Producer" not in page


def test_each_signoffs_client_sheet_has_a_folder_of_its_own_and_the_newest_is_found(tmp_path):
    """Issue 30 (1): a client's link opens the sheet of the sign-off it was given with; a
    later sign-off writes its own, and a new link opens the newest."""
    import time

    from cutline.imaging.contact_sheet import (
        client_sheet_folder,
        new_sheet_id,
        newest_client_sheet,
    )

    job_root = str(tmp_path / "JOB-1")
    assert newest_client_sheet(job_root) is None
    older = client_sheet_folder(job_root, new_sheet_id("aaaaaaaa-0000"))
    time.sleep(1.1)  # ids are made to the second
    newer = client_sheet_folder(job_root, new_sheet_id("bbbbbbbb-0000"))
    for folder in (newer, older):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "index.html").write_text("sheet")
    assert older != newer and Path(older).parent == Path(newer).parent
    assert newest_client_sheet(job_root) == newer
