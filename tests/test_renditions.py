"""Renditions as a user opens them: PSD layers and mask, RGBA PNG, channel JPGs, XMP."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from psd_tools import PSDImage
from psd_tools.constants import Resource

from cutline.base.settings import DEFAULT_PRESETS_FILE
from cutline.imaging import renditions
from cutline.imaging.xmp import build_packet, read_packet
from rules import load_presets
from tests.images import centred_mask, gradient_rgb

XMP = build_packet({"JobID": "SS26-0142", "SKU": 'SKU "quoted" & <odd>', "Channels": "web;social"})


def test_psd_has_original_and_cutout_with_ai_mask_as_layer_mask():
    rgb, mask = gradient_rgb(120, 80), centred_mask(120, 80)
    psd = PSDImage.open(io.BytesIO(renditions.psd_bytes(rgb, mask, XMP)))
    assert psd.size == (120, 80)
    assert [layer.name for layer in psd] == ["Original", "Cutout"]
    original, cutout = list(psd)
    assert not original.has_mask() and not original.visible
    assert cutout.has_mask() and cutout.visible
    layer_mask = np.asarray(cutout.mask.topil())
    assert layer_mask.shape == (80, 120)
    assert np.array_equal(layer_mask, np.asarray(mask))
    assert np.array_equal(np.asarray(original.topil().convert("RGB")), np.asarray(rgb))
    xmp = psd.image_resources.get_data(Resource.XMP_METADATA)
    assert read_packet(xmp)["SKU"] == 'SKU "quoted" & <odd>'
    assert read_packet(xmp)["Channels"] == "web;social"


def test_psd_merged_image_is_the_cutout_over_white_and_everything_is_compressed():
    from psd_tools.constants import Compression

    rgb, mask = Image.new("RGB", (60, 40), (200, 10, 10)), centred_mask(60, 40)
    psd = PSDImage.open(io.BytesIO(renditions.psd_bytes(rgb, mask, XMP)))
    merged = psd.topil()
    assert merged.getpixel((1, 1)) == (255, 255, 255)  # background: masked out
    assert merged.getpixel((30, 20)) == (200, 10, 10)  # subject
    assert psd._record.image_data.compression == Compression.RLE
    for layer in psd:
        assert all(channel.compression == Compression.RLE for channel in layer._channels)


def test_png_is_rgba_at_source_size_with_mask_as_alpha_and_xmp():
    rgb, mask = gradient_rgb(120, 80), centred_mask(120, 80)
    data = renditions.png_bytes(renditions.cutout_rgba(rgb, mask), XMP, compress_level=1)
    png = Image.open(io.BytesIO(data))
    assert png.mode == "RGBA" and png.size == (120, 80)
    assert np.array_equal(np.asarray(png.getchannel("A")), np.asarray(mask))
    fields = read_packet(png.info["xmp"])
    assert fields == {"JobID": "SS26-0142", "SKU": 'SKU "quoted" & <odd>', "Channels": "web;social"}


def test_channel_jpg_is_rgb_at_preset_size_with_subject_framed_on_background():
    book = load_presets(DEFAULT_PRESETS_FILE)
    rgb, mask = Image.new("RGB", (400, 200), (200, 0, 0)), centred_mask(400, 200)
    for name, preset in book.presets.items():
        data = renditions.channel_jpg_bytes(renditions.cutout_rgba(rgb, mask), preset, XMP)
        jpg = Image.open(io.BytesIO(data))
        assert jpg.format == "JPEG" and jpg.mode == "RGB", name
        assert jpg.size == preset.canvas, name
        corner = jpg.getpixel((2, 2))
        assert all(abs(c - b) <= 3 for c, b in zip(corner, preset.background_rgb, strict=True)), (
            name
        )
        centre = jpg.getpixel((jpg.width // 2, jpg.height // 2))
        assert centre[0] > 150 and centre[1] < 60, name
        assert read_packet(jpg.info["xmp"])["JobID"] == "SS26-0142"


def test_subject_fills_the_canvas_inside_the_margin():
    book = load_presets(DEFAULT_PRESETS_FILE)
    preset = book.presets["web"]
    rgb, mask = Image.new("RGB", (400, 200), (0, 0, 0)), centred_mask(400, 200)
    jpg = Image.open(
        io.BytesIO(renditions.channel_jpg_bytes(renditions.cutout_rgba(rgb, mask), preset, XMP))
    )
    dark = np.asarray(jpg.convert("L")) < 100
    cols = np.flatnonzero(dark.any(axis=0))
    expected = preset.canvas[0] * (1 - 2 * preset.margin)
    assert abs((cols[-1] - cols[0] + 1) - expected) <= 3


def test_mask_of_wrong_size_is_refused():
    try:
        renditions.cutout_rgba(gradient_rgb(10, 10), centred_mask(12, 10))
    except ValueError as exc:
        assert "differs" in str(exc)
    else:
        raise AssertionError("a mismatched mask must be refused")
