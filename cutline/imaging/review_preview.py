"""What a retoucher sees before deciding: the source, the cutout on a checkerboard and the
AI mask over the source, side by side, small enough to load at once in a browser."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from cutline.imaging.codec import decode_image, load_mask
from cutline.imaging.contact_sheet import checkerboard

PANEL = 360
_LABEL_H = 26
_OVERLAY = (230, 40, 90)  # where the mask drops the background: tinted, so holes show


def review_preview_jpeg(
    source: bytes, source_name: str, mask: bytes, mask_name: str, max_pixels: int
) -> bytes:
    """A JPEG of three panels (source · cutout on checkerboard · mask overlay), each at most
    PANEL px on its long side. JPEG, not PNG: the panels are photographs, and an optimised PNG
    of them took ten times the CPU of everything else a review's request does."""
    rgb, _ = decode_image(source, source_name, max_pixels=max_pixels, max_side=PANEL)
    alpha = load_mask(mask, mask_name).resize(rgb.size, Image.Resampling.BILINEAR)
    cutout = checkerboard(rgb.size)
    cutout.paste(rgb, (0, 0), alpha)
    # Removed areas: darkened, desaturated and tinted (like a quick mask), so they differ from
    # the subject whatever its colour; kept areas stay as shot.
    dimmed = rgb.convert("L").point(lambda v: v // 2).convert("RGB")
    removed = Image.blend(dimmed, Image.new("RGB", rgb.size, _OVERLAY), 0.4)
    overlay = Image.composite(rgb, removed, alpha)
    panels = [
        ("source", rgb),
        ("cutout on checkerboard", cutout),
        ("AI mask (tint = removed)", overlay),
    ]
    width = sum(p.width for _, p in panels) + 8 * (len(panels) + 1)
    sheet = Image.new("RGB", (width, rgb.height + _LABEL_H + 16), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=15)
    x = 8
    for label, panel in panels:
        sheet.paste(panel, (x, _LABEL_H + 8))
        draw.text((x, 7), label, fill=(40, 40, 40), font=font)
        x += panel.width + 8
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=88, subsampling=0)  # 4:4:4 keeps thin edges true
    return out.getvalue()
