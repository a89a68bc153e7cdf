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
