"""The picture a retoucher judges a cutout by: each panel shows what its label says."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cutline.imaging.review_preview import PANEL, review_preview_jpeg


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_the_panels_show_source_cutout_and_what_the_mask_removes() -> None:
    source = Image.new("RGB", (720, 360), (200, 30, 30))
    mask = np.zeros((360, 720), dtype=np.uint8)
    mask[:, :360] = 255  # keep the left half only
    preview = review_preview_jpeg(
        _png(source), "red.png", _png(Image.fromarray(mask)), "mask.png", 10_000_000
    )
    sheet = np.asarray(Image.open(io.BytesIO(preview)).convert("RGB")).astype(int)
    panel_w, panel_h = PANEL, PANEL // 2  # the long side is scaled to PANEL
    top = sheet.shape[0] - 8 - panel_h
    panels = [
        sheet[top : top + panel_h, x : x + panel_w] for x in (8, 16 + panel_w, 24 + 2 * panel_w)
    ]
    src, cut, over = panels
    red = np.array([200, 30, 30])
    assert np.abs(src[10:-10, 10:-10] - red).max() < 8  # the source as it is
    assert np.abs(cut[10:-10, 10 : panel_w // 2 - 10] - red).max() < 8  # kept: the subject
    removed = cut[10:-10, panel_w // 2 + 10 : -10]
    # Only the checkerboard's light greys, nothing of the red subject (JPEG moves a value by a
    # few levels next to a square's edge).
    assert (removed.max(axis=2) - removed.min(axis=2)).max() <= 6 and removed.min() >= 190
    assert np.abs(over[10:-10, 10 : panel_w // 2 - 10] - red).max() < 8  # kept: untinted
    tinted = over[10:-10, panel_w // 2 + 10 : -10]
    assert np.abs(tinted - red).mean() > 30  # removed: visibly different, even on a red subject
    assert len(preview) < 400_000  # loads at once in the form
