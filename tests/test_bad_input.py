"""Bad and odd input: each bad file fails alone with a reason, odd ones are processed, nothing
is written outside the output root, and the ledger reconciles."""

from __future__ import annotations

import struct
import zlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cutline.imaging.samples import Sample, render_sample
from cutline.records.ledger import read_ledger
from tests.images import encode

pytestmark = pytest.mark.slow

PRODUCT = Sample("x", "x", "homeware", "round", (40, 90, 160))


def _product(size=(320, 240)) -> Image.Image:
    return render_sample(PRODUCT, size)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: the classic decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels)


def _psd_header(width: int, height: int) -> bytes:
    """A valid PSD file header (RGB, 8 bits) with nothing sensible after it."""
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)


def _corpus(folder: Path) -> dict[str, str]:
    """Write the corpus; return file -> expected lane ('failed' or 'processed')."""
    folder.mkdir(parents=True)
    (folder / "day1").mkdir()
    (folder / "day2").mkdir()
    product = _product()
    exif = Image.Exif()
    exif[0x0112] = 6
    files: dict[str, tuple[bytes, str]] = {
        "zero.jpg": (b"", "failed"),
        "truncated.jpg": (encode(product, "JPEG")[:700], "failed"),
        "notes-named.jpg": (b"Lighting notes for the Monday shoot.\n", "failed"),
        "anim.gif": (
            encode(
                product.convert("P"),
                "GIF",
                save_all=True,
                append_images=[product.convert("P").rotate(10)],
            ),
            "failed",
        ),
        "bomb.png": (encode(Image.new("L", (3000, 2000), 200), "PNG"), "failed"),
        "header-bomb.png": (_png_claiming(60_000, 60_000), "failed"),
        "truncated.tif": (encode(product, "TIFF")[:5000], "failed"),
        "corrupt.psd": (_psd_header(320, 240) + b"\x00\x07garbage" * 40, "failed"),
        "cmyk.jpg": (encode(product.convert("CMYK"), "JPEG"), "processed"),
        "gray16.png": (
            encode(Image.fromarray(np.asarray(product.convert("L"), dtype=np.uint16) * 257), "PNG"),
            "processed",
        ),
        "gray16.tif": (
            encode(
                Image.fromarray(np.asarray(product.convert("L"), dtype=np.uint16) * 257), "TIFF"
            ),
            "processed",
        ),
        "gray.jpg": (encode(product.convert("L"), "JPEG"), "processed"),
        "palette-transparent.png": (
            encode(product.convert("P"), "PNG", transparency=0),
            "processed",
        ),
        "has-alpha.png": (encode(product.convert("RGBA"), "PNG"), "processed"),
        "rotated.jpg": (encode(product, "JPEG", exif=exif.tobytes()), "processed"),
        "tiny.png": (encode(product.resize((8, 8)), "PNG"), "processed"),
        "wide.jpg": (encode(product.resize((4000, 60)), "JPEG"), "processed"),
        "day1/IMG_0001.jpg": (encode(product, "JPEG"), "processed"),
        "day2/IMG_0001.jpg": (encode(product.rotate(5), "JPEG"), "processed"),
        "Crème brûlée — hero shot.jpg": (encode(product, "JPEG"), "processed"),
        "passwd-sku.jpg": (encode(product, "JPEG"), "processed"),
        "bad-date.jpg": (encode(product, "JPEG"), "failed"),
        "unlisted.jpg": (encode(product, "JPEG"), "processed"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    # A link whose target was moved away (a disk not mounted): fails alone, saying so.
    (folder / "dangling.jpg").symlink_to(folder.parent / "moved-away" / "IMG_9.jpg")
    files["dangling.jpg"] = (b"", "failed")
    due = (date.today() + timedelta(days=7)).isoformat()
    (folder / "manifest.csv").write_text(
        "filename,sku,category,deadline\n"
        f"passwd-sku.jpg,../../etc/passwd,homeware,{due}\n"
        "bad-date.jpg,SKU-DATE,homeware,the day after tomorrow\n"
        f"missing-file.jpg,SKU-GONE,homeware,{due}\n"
        f"day1/IMG_0001.jpg,SKU-D1,homeware,{due}\n",
        encoding="utf-8",
    )
    return {name: lane for name, (_, lane) in files.items()}


@pytest.fixture(scope="module")
def corpus_run(prefect_server, model_home, tmp_path_factory):
    import os

    from cutline.base.settings import reload_settings
    from flows.process_shoot import process_shoot

    root = tmp_path_factory.mktemp("corpus")
    expected = _corpus(root / "shoot")
    before = {p for p in root.rglob("*")}
    os.environ["CUTLINE_MAX_PIXELS"] = "5000000"  # the 6 MP bomb is over, everything else under
    reload_settings()
    try:
        summary = process_shoot(
            shoot=str(root / "shoot"),
            job_id="BAD-0001",
            manifest=str(root / "shoot" / "manifest.csv"),
            output_root=str(root / "out"),
        )
    finally:
        os.environ.pop("CUTLINE_MAX_PIXELS")
        reload_settings()
    rows = {r["source_name"]: r for r in read_ledger(summary.ledger)}
    created = {p for p in root.rglob("*")} - before
    return summary, rows, expected, root, created


def test_every_file_is_in_exactly_one_lane_and_the_ledger_reconciles(corpus_run):
    summary, rows, expected, _, _ = corpus_run
    # Every file, and the manifest row that names no file, each have one ledger row.
    assert sorted(rows) == sorted([*expected, "missing-file.jpg"])
    assert sum(summary.lanes.values()) == len(expected) + 1 == summary.total
    for name, lane in expected.items():
        got = rows[name]["lane"]
        assert (got == "failed") == (lane == "failed"), (name, got, rows[name]["error"])
        assert rows[name]["reasons"], name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("zero.jpg", "empty (0 bytes)"),
        ("truncated.jpg", "damaged or incomplete"),
        ("notes-named.jpg", "not a readable image"),
        ("anim.gif", "animated GIF"),
        ("bomb.png", "exceeds the limit of 5,000,000"),
        ("header-bomb.png", "60000x60000"),
        ("truncated.tif", "damaged or incomplete"),
        ("corrupt.psd", "not a readable image"),
        ("bad-date.jpg", "deadline 'the day after tomorrow' is not a date"),
        ("dangling.jpg", "which does not exist (a dangling link"),
    ],
)
def test_bad_files_fail_with_a_reason_a_producer_understands(corpus_run, name, words):
    _, rows, _, _, _ = corpus_run
    assert words in rows[name]["error"]


def test_colour_images_come_out_in_srgb_rgb(corpus_run):
    _, rows, _, _, _ = corpus_run
    for name in (
        "cmyk.jpg",
        "gray16.png",
        "gray16.tif",
        "gray.jpg",
        "palette-transparent.png",
        "has-alpha.png",
    ):
        row = rows[name]
        output = row["png"] or row["psd"]
        assert output, name
        if row["png"]:
            png = Image.open(row["png"])
            assert png.mode == "RGBA" and png.size == (int(row["width"]), int(row["height"])), name
    assert (int(rows["rotated.jpg"]["width"]), int(rows["rotated.jpg"]["height"])) == (240, 320)


def test_hostile_names_and_skus_stay_inside_the_output_root(corpus_run):
    _, rows, _, root, created = corpus_run
    out = (root / "out").resolve()
    outside = [p for p in created if not p.resolve().is_relative_to(out)]
    assert outside == []
    passwd = rows["passwd-sku.jpg"]
    assert passwd["sku"] == "../../etc/passwd"  # the original value is kept as metadata
    for column in ("mask", "png", "psd"):
        if passwd[column]:
            assert Path(passwd[column]).resolve().is_relative_to(out)
    assert rows["day1/IMG_0001.jpg"]["image_id"] != rows["day2/IMG_0001.jpg"]["image_id"]
    assert (
        rows["day1/IMG_0001.jpg"]["sku"] == "SKU-D1" and rows["day2/IMG_0001.jpg"]["sku"] == "IMG"
    )
    unicode_row = rows["Crème brûlée — hero shot.jpg"]
    assert unicode_row["image_id"].isascii() and " " not in unicode_row["image_id"]


def test_manifest_rows_without_files_are_reported_and_in_the_ledger(corpus_run):
    summary, rows, _, _, _ = corpus_run
    assert summary.manifest_rows_without_files == ["missing-file.jpg"]
    row = rows["missing-file.jpg"]
    assert row["lane"] == "failed" and row["sku"] == "SKU-GONE"
    assert "no file for this manifest row (line 4 names 'missing-file.jpg')" in row["error"]
