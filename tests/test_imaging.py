"""Decoding: every input becomes an upright sRGB 8-bit RGB image, or a clear per-image error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageCms

from cutline.base.errors import ImageInputError
from cutline.imaging.codec import decode_image
from tests.images import encode, gradient_rgb

LIMIT = 50_000_000


def test_exif_rotated_jpeg_comes_out_upright():
    img = gradient_rgb(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # camera held sideways: display rotated 90 degrees clockwise
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    out, info = decode_image(data, "rotated.jpg", max_pixels=LIMIT)
    assert out.size == (48, 64)
    assert (info.width, info.height) == (48, 64)


def test_reduced_decode_reports_full_upright_size():
    img = gradient_rgb(1200, 800)
    exif = Image.Exif()
    exif[0x0112] = 8
    data = encode(img, "JPEG", exif=exif.tobytes())
    small, info = decode_image(data, "big.jpg", max_pixels=LIMIT, max_side=300)
    assert max(small.size) <= 300
    assert (info.width, info.height) == (800, 1200)


def test_cmyk_jpeg_with_profile_becomes_srgb_rgb():
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red ink
    data = encode(cmyk, "JPEG", quality=95)
    out, info = decode_image(data, "cmyk.jpg", max_pixels=LIMIT)
    assert out.mode == "RGB" and info.source_mode == "CMYK"
    r, g, b = out.getpixel((16, 16))
    assert r > 200 and g < 80 and b < 80


def test_embedded_profile_is_converted_to_srgb():
    # An image tagged with an sRGB profile goes through colour management unchanged in size.
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    data = encode(gradient_rgb(), "PNG", icc_profile=srgb.tobytes())
    out, info = decode_image(data, "tagged.png", max_pixels=LIMIT)
    assert info.had_icc_profile and out.mode == "RGB" and out.size == (64, 48)


def test_sixteen_bit_grayscale_png_is_scaled_to_eight_bit():
    arr = np.full((16, 16), 65535 // 2, dtype=np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    out, _ = decode_image(data, "deep.png", max_pixels=LIMIT)
    assert out.mode == "RGB"
    assert abs(out.getpixel((0, 0))[0] - 127) <= 1


def test_palette_png_with_transparency_is_flattened_on_white():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    data = encode(img, "PNG", transparency=0)
    out, _ = decode_image(data, "palette.png", max_pixels=LIMIT)
    assert out.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"this is a text file, not a photo", "not a readable image"),
        (encode(gradient_rgb(400, 300), "JPEG")[:900], "damaged or incomplete"),
    ],
    ids=["zero-bytes", "text-named-jpg", "truncated-jpeg"],
)
def test_bad_files_raise_a_clear_per_image_error(data: bytes, expected: str):
    with pytest.raises(ImageInputError) as info:
        decode_image(data, "shoot/IMG_0001.jpg", max_pixels=LIMIT)
    assert "shoot/IMG_0001.jpg" in str(info.value)
    assert expected in str(info.value)


def test_pixel_limit_refuses_before_decoding():
    data = encode(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(ImageInputError) as info:
        decode_image(data, "bomb.png", max_pixels=1_000_000)
    assert "4,000,000 pixels exceeds the limit of 1,000,000" in str(info.value)
    assert "CUTLINE_MAX_PIXELS" in str(info.value)


def test_animated_gif_is_refused():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageInputError, match="animated GIF with 2 frames"):
        decode_image(data, "anim.gif", max_pixels=LIMIT)


def _png_with_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = encode(Image.new("RGB", (64, 48), (200, 10, 10)), "PNG")
    return png[:33] + chunk + png[33:]  # right after IHDR


def _text_bomb(kind: bytes) -> bytes:
    import zlib

    prefix = b"Comment\x00\x00" if kind == b"zTXt" else b"Comment\x00\x01\x00\x00\x00"
    return _png_with_chunk(kind, prefix + zlib.compress(b"A" * 200_000_000, 9))


def _psd_promising_more(width: int = 320, height: int = 240) -> bytes:
    import struct

    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 1) + b"\x00" * 10


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # 200 MB of text behind a few hundred KB: Pillow stops it; the image says why.
        (_text_bomb(b"zTXt"), "a compressed text block that expands beyond the safety limit"),
        (_text_bomb(b"iTXt"), "a compressed text block that expands beyond the safety limit"),
        # A PSD header promising layers and data the file does not hold.
        (_psd_promising_more(), "header or metadata is damaged or does not match the data"),
    ],
)
def test_hostile_headers_fail_with_their_cause(data: bytes, expected: str):
    with pytest.raises(ImageInputError, match=expected):
        decode_image(data, "x", max_pixels=10**8, max_side=1024)
