"""Cutline's PNG writer: what any PNG reader gets back is exactly the image, with its text."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from cutline.imaging.png_writer import encode_png


def noise(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    """Random pixels: every byte difference between rows occurs, wrap-around included."""
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    values = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    return Image.fromarray(values[:, :, 0] if channels == 1 else values, mode)


def photo_like(width: int, height: int) -> Image.Image:
    """Smooth colour gradients with a little sensor noise, and a soft-edged alpha."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(1)
    rgb = np.stack([x / width * 200 + 30, y / height * 180 + 40, (x + y) / (width + height) * 255])
    rgb = rgb.transpose(1, 2, 0) + rng.normal(0, 3, (height, width, 3))
    distance = np.hypot(x - width / 2, y - height / 2) / (min(width, height) / 3)
    alpha = np.clip((1.2 - distance) * 255 / 0.4, 0, 255)
    pixels = np.dstack([rgb, alpha]).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGBA")


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (type, payload) chunks of a PNG, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        found.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + length]))
        at += 12 + length
    return found


def decoded(data: bytes) -> Image.Image:
    """The image as Pillow reads it, after Pillow has checked every chunk's CRC."""
    Image.open(io.BytesIO(data)).verify()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (333, 257)])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_every_pixel_reads_back_exactly(mode, size, level):
    image = noise(mode, *size)
    back = decoded(encode_png(image, level))
    assert back.format == "PNG" and back.mode == mode and back.size == size
    assert np.array_equal(np.asarray(back), np.asarray(image))


def test_text_is_stored_before_the_pixels_and_read_back_by_key():
    image = photo_like(64, 48)
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>Füße &amp; ✓</rdf:RDF></x:xmpmeta>'
    data = encode_png(image, 1, {"XML:com.adobe.xmp": xmp, "Comment": "two"})
    back = decoded(data)
    assert back.info["XML:com.adobe.xmp"] == xmp and back.info["xmp"] == xmp.encode("utf-8")
    assert back.text["Comment"] == "two"
    kinds = [kind for kind, _ in chunks(data)]
    assert kinds == [b"IHDR", b"iTXt", b"iTXt", b"IDAT", b"IEND"]


def test_large_images_are_split_over_several_data_chunks():
    image = noise("RGBA", 700, 500)  # 1.4 MB of incompressible pixels
    data = encode_png(image, 1)
    kinds = [kind for kind, _ in chunks(data)]
    assert kinds.count(b"IDAT") == 2 and kinds[-1] == b"IEND"
    assert all(len(payload) <= 1 << 20 for kind, payload in chunks(data) if kind == b"IDAT")
    assert np.array_equal(np.asarray(decoded(data)), np.asarray(image))


def test_files_are_no_bigger_than_pillows_for_photographs_and_masks():
    photo = photo_like(900, 600)
    mask = photo.getchannel("A")
    for image in (photo, photo.convert("RGB"), mask):
        ours = encode_png(image, 1)
        pillows = io.BytesIO()
        image.save(pillows, format="PNG", compress_level=1)
        assert len(ours) <= 1.05 * len(pillows.getvalue()), image.mode


@pytest.mark.parametrize("mode", ["1", "P", "LA", "I;16"])
def test_other_modes_are_written_by_pillow_and_read_back_exactly(mode):
    image = noise("L", 40, 30).convert(mode)
    back = decoded(encode_png(image, 1, {"Comment": "kept"}))
    assert back.mode == mode and back.text["Comment"] == "kept"
    assert np.array_equal(np.asarray(back), np.asarray(image))


@pytest.mark.parametrize("key", ["", "k" * 80, "a\0b", " padded", "Schlüssel"])
def test_a_key_png_cannot_hold_is_refused_before_anything_is_written(key):
    with pytest.raises(ValueError, match="not a PNG text keyword"):
        encode_png(noise("L", 4, 4), 1, {key: "text"})
