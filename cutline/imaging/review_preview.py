"""What a retoucher sees before deciding: the source, the cutout on a checkerboard, the AI mask
over the source and a zoomed detail of the edge where the mask is least sure, as a 2 x 2 grid
small enough to load at once in a browser (the form shows it at its width; a click opens it at
full size)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from cutline.imaging.codec import decode_image, load_mask
from cutline.imaging.contact_sheet import checkerboard

PANEL = 360
ZOOM = 4  # the edge detail's pixels per panel pixel: hair strands show at this scale
_LABEL_H = 26
_GAP = 8
_OVERLAY = (230, 40, 90)  # where the mask drops the background: tinted, so holes show


def review_preview_jpeg(
    source: bytes, source_name: str, mask: bytes, mask_name: str, max_pixels: int
) -> bytes:
    """A JPEG of four panels (source · cutout on checkerboard / mask overlay · edge detail),
    each at most PANEL px on its long side. JPEG, not PNG: the panels are photographs, and an
    optimised PNG of them took ten times the CPU of everything else a review's request does."""
    full_mask = load_mask(mask, mask_name)
    rgb, _ = decode_image(source, source_name, max_pixels=max_pixels, max_side=PANEL)
    alpha = full_mask.resize(rgb.size, Image.Resampling.BILINEAR)
    overlay = _mask_overlay(rgb, alpha)
    detail, zoom = _edge_detail(source, source_name, full_mask, alpha, max_pixels)
    panels = [
        ("source", rgb),
        ("cutout on checkerboard", _on_checkerboard(rgb, alpha)),
        ("AI mask (tint = removed)", overlay),
        (f"edge detail, {zoom:.1f}x (least sure part)", detail),
    ]
    cell_w = max(p.width for _, p in panels)
    cell_h = max(p.height for _, p in panels) + _LABEL_H
    sheet = Image.new("RGB", (2 * cell_w + 3 * _GAP, 2 * cell_h + 3 * _GAP), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=15)
    for n, (label, panel) in enumerate(panels):
        x = _GAP + (n % 2) * (cell_w + _GAP)
        y = _GAP + (n // 2) * (cell_h + _GAP)
        draw.text((x, y), label, fill=(40, 40, 40), font=font)
        sheet.paste(panel, (x, y + _LABEL_H))
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=88, subsampling=0)  # 4:4:4 keeps thin edges true
    return out.getvalue()


def _on_checkerboard(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    cutout = checkerboard(rgb.size)
    cutout.paste(rgb, (0, 0), alpha)
    return cutout


def _mask_overlay(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    """Removed areas darkened, desaturated and tinted (like a quick mask), so they differ from
    the subject whatever its colour; kept areas stay as shot."""
    dimmed = rgb.convert("L").point(lambda v: v // 2).convert("RGB")
    removed = Image.blend(dimmed, Image.new("RGB", rgb.size, _OVERLAY), 0.4)
    return Image.composite(rgb, removed, alpha)


def _least_sure_point(alpha: Image.Image) -> tuple[float, float]:
    """Where (as fractions of width and height) the mask's edge is most undecided: the centre
    of the soft-edge pixels in the PANEL/ZOOM-sized window that holds most of them (a hard
    mask's outline, softened, stands in when the mask has no soft pixels)."""
    soft = np.asarray(alpha.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32) / 255.0
    band = ((soft > 0.05) & (soft < 0.95)).astype(np.float32)
    if not band.any():
        return 0.5, 0.5
    h, w = band.shape
    win = max(1, PANEL // ZOOM)
    sums = np.pad(band.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys, xs = np.arange(0, max(1, h - win + 1)), np.arange(0, max(1, w - win + 1))
    y1, x1 = np.minimum(ys + win, h), np.minimum(xs + win, w)
    counts = (
        sums[y1][:, x1] - sums[ys][:, x1] - sums[y1][:, xs] + sums[ys][:, xs]
    )  # band pixels in each window
    y, x = np.unravel_index(int(np.argmax(counts)), counts.shape)
    rows, cols = np.nonzero(band[y : y + win, x : x + win])  # centred on the band itself
    return (x + cols.mean() + 0.5) / w, (y + rows.mean() + 0.5) / h


def _edge_detail(
    source: bytes, source_name: str, full_mask: Image.Image, alpha: Image.Image, max_pixels: int
) -> tuple[Image.Image, float]:
    """The cutout on a checkerboard, up to ZOOM times the other panels' scale (the photo's own
    pixels at most), around the least sure part of the edge, and its zoom (decoded at that
    scale only: cheap even for a 24 MP photo)."""
    fx, fy = _least_sure_point(alpha)
    big, _ = decode_image(source, source_name, max_pixels=max_pixels, max_side=PANEL * ZOOM)
    big_alpha = full_mask.resize(big.size, Image.Resampling.BILINEAR)
    side = min(PANEL, big.width, big.height)
    left = int(min(max(fx * big.width - side / 2, 0), big.width - side))
    top = int(min(max(fy * big.height - side / 2, 0), big.height - side))
    box = (left, top, left + side, top + side)
    return _on_checkerboard(big.crop(box), big_alpha.crop(box)), big.width / alpha.width
