"""The picture a retoucher judges a cutout by: each panel shows what its label says."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cutline.imaging.review_preview import PANEL, ZOOM, review_preview_jpeg


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
    cell_h = PANEL + 26  # the tallest panel (the square edge detail) and its label
    at = [
        (8 + 26, 8),
        (8 + 26, 16 + panel_w),
        (16 + cell_h + 26, 8),
        (16 + cell_h + 26, 16 + panel_w),
    ]
    src, cut, over = (sheet[y : y + panel_h, x : x + panel_w] for y, x in at[:3])
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
    # The edge detail: the mask's edge (x = 360 of 720) at twice the panels' scale (the
    # source has no more pixels), subject on its left, checkerboard on its right.
    y, x = at[3]
    detail = sheet[y : y + PANEL, x : x + PANEL]
    assert np.abs(detail[10:-10, 10 : PANEL // 2 - 10] - red).max() < 8
    board = detail[10:-10, PANEL // 2 + 10 : -10]
    assert (board.max(axis=2) - board.min(axis=2)).max() <= 6 and board.min() >= 190
    assert len(preview) < 400_000  # loads at once in the form


def test_the_edge_detail_zooms_into_the_soft_edge_of_a_large_photo() -> None:
    """A 2400 px photo with a hard-edged block and one soft (feathered) edge: the detail shows
    the soft edge at ZOOM times the panels' scale, its alpha ramp spread over many pixels."""
    source = Image.new("RGB", (2400, 1600), (30, 60, 200))
    mask = np.zeros((1600, 2400), dtype=np.uint8)
    mask[400:1200, 400:1200] = 255  # hard edges
    ramp = np.linspace(255, 0, 400).astype(np.uint8)
    mask[400:1200, 1200:1600] = ramp  # a soft edge 400 px wide
    preview = review_preview_jpeg(
        _png(source), "blue.png", _png(Image.fromarray(mask)), "mask.png", 50_000_000
    )
    sheet = np.asarray(Image.open(io.BytesIO(preview)).convert("RGB")).astype(int)
    cell_h = 240 + 26  # the panels are 360 x 240 here
    y, x = 16 + cell_h + 26, 16 + PANEL
    detail = sheet[y : y + PANEL, x : x + PANEL]
    blue = np.array([30, 60, 200])
    distance = np.abs(detail - blue).mean(axis=2).mean(axis=0)  # per column: 0 = all subject
    mixed = np.count_nonzero((distance > 15) & (distance < distance.max() - 15))
    assert mixed > PANEL // 3, mixed  # the soft edge spans the detail, not a few pixels
    assert ZOOM == 4
