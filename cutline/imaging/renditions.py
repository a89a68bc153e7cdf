"""Renditions built from a source image and its approved mask: PNG, layered PSD, channel JPGs.

Each function returns encoded bytes; callers write them with an atomic write so a
half-written rendition never appears under its final name.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cutline.imaging.png_writer import encode_png
from rules.presets import ChannelPreset

XMP_PNG_KEY = "XML:com.adobe.xmp"  # where Adobe's tools look for XMP in a PNG
_SUBJECT_ALPHA = 8  # alpha above this counts as subject when framing a JPG


def cutout_rgba(rgb: Image.Image, mask: Image.Image) -> Image.Image:
    """The source with the mask as its alpha channel."""
    if rgb.size != mask.size:
        raise ValueError(f"mask size {mask.size} differs from image size {rgb.size}")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(mask)
    return rgba


def png_bytes(rgba: Image.Image, xmp: bytes, compress_level: int) -> bytes:
    """PNG with alpha and an XMP packet."""
    return encode_png(rgba, compress_level, {XMP_PNG_KEY: xmp.decode("utf-8")})


def psd_bytes(
    rgb: Image.Image, mask: Image.Image, xmp: bytes | None = None, cutout: Image.Image | None = None
) -> bytes:
    """Layered PSD: the original as a hidden background layer, and a 'Cutout' layer with
    the AI mask as its layer mask, so a retoucher refines the mask instead of redrawing it.
    ``xmp`` is stored as the document's XMP metadata resource. ``cutout``: the Cutout layer's
    own pixels (the decontaminated colours) when they are not the original's."""
    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer
    from psd_tools.constants import Resource
    from psd_tools.psd.image_resources import ImageResource

    psd = PSDImage.new("RGB", rgb.size, color=(255, 255, 255))
    if xmp:
        psd.image_resources[Resource.XMP_METADATA] = ImageResource(
            key=Resource.XMP_METADATA, data=xmp
        )
    original = PixelLayer.frompil(rgb, psd, "Original")
    if cutout is None:
        # The same pixels: copied, not encoded a second time (a tenth of a second at 24 MP).
        layer = original.duplicate(name="Cutout")
    else:
        layer = PixelLayer.frompil(cutout, psd, "Cutout")
    original.visible = False
    layer.create_mask(mask)
    _set_merged_image(psd, rgb if cutout is None else cutout, mask)
    buf = io.BytesIO()
    psd.save(buf)
    return buf.getvalue()


def _set_merged_image(psd, rgb: Image.Image, mask: Image.Image) -> None:
    """Store the document's merged image (what viewers without layer support show) ourselves.

    psd-tools would re-render it through its general compositor, which takes about 9 s for
    a 24-megapixel document; here it is simply the cutout over white, computed with numpy
    and stored RLE-compressed like Photoshop's own 8-bit files. Only 8-bit RGB documents
    take this path; anything else keeps psd-tools' compositor.
    """
    from psd_tools.constants import Compression

    header = psd._record.header
    if header.channels != 3 or header.depth != 8:
        return
    merged = Image.composite(rgb, Image.new("RGB", rgb.size, (255, 255, 255)), mask)
    image_data = psd._record.image_data
    image_data.compression = Compression.RLE
    image_data.set_data([band.tobytes() for band in merged.split()], header)
    psd._updated = False  # the merged image is current: skip psd-tools' re-render on save


def subject_box(mask: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box of the subject (alpha above a small floor), or None if empty."""
    arr = np.asarray(mask)
    rows = np.flatnonzero((arr > _SUBJECT_ALPHA).any(axis=1))
    cols = np.flatnonzero((arr > _SUBJECT_ALPHA).any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def channel_jpg_bytes(rgba: Image.Image, preset: ChannelPreset, xmp: bytes) -> bytes:
    """Flat RGB JPG on the preset's canvas: subject cropped, scaled to fit inside the
    margin, centred on the background colour."""
    canvas_w, canvas_h = preset.canvas
    canvas = Image.new("RGB", (canvas_w, canvas_h), preset.background_rgb)
    box = subject_box(rgba.getchannel("A"))
    if box is not None:
        subject = rgba.crop(box)
        avail_w = max(1, round(canvas_w * (1 - 2 * preset.margin)))
        avail_h = max(1, round(canvas_h * (1 - 2 * preset.margin)))
        scale = min(avail_w / subject.width, avail_h / subject.height)
        new_size = (max(1, round(subject.width * scale)), max(1, round(subject.height * scale)))
        subject = subject.resize(new_size, Image.Resampling.LANCZOS)
        offset = ((canvas_w - new_size[0]) // 2, (canvas_h - new_size[1]) // 2)
        canvas.paste(subject, offset, subject)
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=preset.quality, optimize=False, xmp=xmp)
    return buf.getvalue()
