"""Decode input images into the one form every stage works on: sRGB, 8-bit RGB, upright."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from cutline.base.errors import ImageInputError
from cutline.imaging.png_writer import encode_png

# Pillow's own bomb check would fire at its global limit; ours is per-call and configurable.
Image.MAX_IMAGE_PIXELS = None

_SRGB_PROFILE = ImageCms.createProfile("sRGB")
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """What ingest learns about a source without keeping its pixels."""

    width: int
    height: int
    source_mode: str
    source_format: str
    had_icc_profile: bool


def _unreadable_header(source: str, exc: Exception) -> ImageInputError:
    """The error for a file whose header or metadata cannot be parsed (Pillow raises many
    kinds: OSError, ValueError, struct.error, SyntaxError, IndexError ...)."""
    if "Decompressed data too large" in str(exc):
        return ImageInputError(
            source,
            "its metadata holds a compressed text block that expands beyond the safety limit "
            "(a 'text bomb'); the image was not decoded.",
            hint="Re-export the image without its text metadata (or from the original capture).",
        )
    return ImageInputError(
        source,
        f"not a readable image: its header or metadata is damaged or does not match the data "
        f"({type(exc).__name__}: {exc}).",
        hint="Re-export or re-copy the file from the camera card or capture software.",
    )


def _open_checked(data: bytes, source: str, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageInputError(
            source, "the file is empty (0 bytes).", hint="Re-export or re-copy it."
        )
    try:
        img = Image.open(io.BytesIO(data))
        img.getexif()  # parsed now: a damaged EXIF block is this file's fault, said here
    except UnidentifiedImageError:
        raise ImageInputError(
            source,
            "not a readable image (the content matches no known image format).",
            hint="Check the file was exported as JPEG/PNG/TIFF and copied completely.",
        ) from None
    except Exception as exc:  # any parser error on these bytes is about this file alone
        raise _unreadable_header(source, exc) from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageInputError(
            source,
            f"{width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}.",
            hint="Downscale it, or raise CUTLINE_MAX_PIXELS if the size is genuine.",
        )
    if getattr(img, "n_frames", 1) > 1 and img.format in {"GIF", "PNG", "WEBP"}:
        raise ImageInputError(
            source,
            f"an animated {img.format} with {img.n_frames} frames; a cutout needs one still image.",
            hint="Export the frame you want as a still image.",
        )
    return img


def _to_srgb_rgb(img: Image.Image, source: str) -> Image.Image:
    icc = img.info.get("icc_profile")
    if img.mode in {"I;16", "I;16B", "I;16L", "I"}:
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        img = Image.fromarray((arr >> 8).clip(0, 255).astype(np.uint8), mode="L")
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if icc:
        try:
            src_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(
                img,
                src_profile,
                _SRGB_PROFILE,
                outputMode="RGB",
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
            )
            if out is not None:
                img = out
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            warnings.warn(f"{source}: embedded colour profile ignored ({exc})", stacklevel=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def decode_image(
    data: bytes, source: str, *, max_pixels: int, max_side: int | None = None
) -> tuple[Image.Image, ImageInfo]:
    """Decode image bytes to an upright sRGB 8-bit RGB image, or raise ImageInputError.

    ``max_side`` asks for a reduced decode (fast JPEG draft mode, then a resize) when
    only a preview-sized image is needed, e.g. for inference.
    """
    img = _open_checked(data, source, max_pixels)
    info_mode, info_format = img.mode, img.format or "unknown"
    had_icc = bool(img.info.get("icc_profile"))
    full_w, full_h = img.size
    if img.getexif().get(_EXIF_ORIENTATION, 1) in {5, 6, 7, 8}:
        full_w, full_h = full_h, full_w
    try:
        if max_side and img.format == "JPEG" and max(img.size) > 2 * max_side:
            img.draft("RGB", (max_side, max_side))
        img.load()
        img = ImageOps.exif_transpose(img) or img
        rgb = _to_srgb_rgb(img, source)
    except ImageInputError:
        raise
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        IndexError,
        KeyError,
        struct.error,
        zlib.error,
        Image.DecompressionBombError,
    ) as exc:
        raise ImageInputError(
            source,
            f"the image data is damaged or incomplete ({exc}).",
            hint="Re-export or re-copy the file from the camera card or capture software.",
        ) from None
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return rgb, ImageInfo(full_w, full_h, info_mode, info_format, had_icc)


def mask_to_png_bytes(mask: Image.Image, compress_level: int) -> bytes:
    """Encode an 8-bit alpha mask as PNG."""
    return encode_png(mask, compress_level)


def load_mask(data: bytes, source: str) -> Image.Image:
    """Decode a mask to 8-bit mode L: the alpha of an image that has one (alpha channel or a
    transparency key), else the image as grayscale (16-bit masks scaled to 8 bits)."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise ImageInputError(source, f"the mask cannot be read ({exc}).") from None
    if img.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in img.info:
        return img.convert("RGBA").getchannel("A")
    if img.mode in {"I;16", "I;16B", "I;16L", "I"}:
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        return Image.fromarray((arr >> 8).clip(0, 255).astype(np.uint8), mode="L")
    return img.convert("L")
