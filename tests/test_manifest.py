"""Manifest CSV: columns, per-row problems, matching files, SKUs from file names."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cutline.base.errors import ConfigError
from cutline.base.naming import image_ids, safe_component
from cutline.domain.manifest import derive_sku, parse_manifest

DEFAULT_PATTERN = r"^(?P<sku>[^_]+)"


def test_manifest_rows_are_cleaned():
    due = date.today() + timedelta(days=4)
    manifest = parse_manifest(
        b"Filename,SKU,Category,campaign,channels,deadline,brief,reference,notes\n"
        b"a/IMG_1.jpg,ABC-1,Glassware,Hero,web; social,"
        + due.isoformat().encode()
        + b",Keep glass clear,ref/a.jpg,x\n",
        "m.csv",
    )
    row = manifest.rows["a/IMG_1.jpg"]
    assert row.sku == "ABC-1" and row.category == "glassware" and row.campaign == "Hero"
    assert row.channels == ("web", "social")
    assert row.deadline is not None and row.deadline.date() == due
    assert row.extra == {"notes": "x"} and not row.problems


def test_bad_deadline_is_a_problem_of_that_row_only():
    due = (date.today() + timedelta(days=1)).isoformat()
    manifest = parse_manifest(
        f"filename,deadline\na.jpg,next tuesday\nb.jpg,{due}\n".encode(), "m.csv"
    )
    assert "deadline 'next tuesday' is not a date" in manifest.rows["a.jpg"].problems[0]
    assert "line 2" in manifest.rows["a.jpg"].problems[0]
    assert not manifest.rows["b.jpg"].problems


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (b"file,sku\na.jpg,1\n", "no 'filename' column"),
        (b"filename,categroy\na.jpg,glass\n", "'categroy' looks like a misspelling of 'category'"),
        (b"filename\na.jpg\na.jpg\n", "listed twice"),
    ],
)
def test_structural_problems_stop_the_run(csv: bytes, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_manifest(csv, "m.csv")


def test_lookup_by_path_then_unique_basename():
    manifest = parse_manifest(b"filename,sku\nIMG_1.jpg,A\nday2/IMG_2.jpg,B\n", "m.csv")
    counts = {"IMG_1.jpg": 1, "IMG_2.jpg": 2}
    assert manifest.lookup("day1/IMG_1.jpg", counts).sku == "A"
    assert manifest.lookup("day2/IMG_2.jpg", counts).sku == "B"
    # The same base name in two folders is ambiguous: only an exact path matches.
    assert manifest.lookup("day1/IMG_2.jpg", counts) is None


@pytest.mark.parametrize(
    ("name", "sku"),
    [("ABC-123_front.jpg", "ABC-123"), ("ABC-123.jpg", "ABC-123"), ("day1/XY9_1_2.tif", "XY9")],
)
def test_sku_from_file_name(name: str, sku: str):
    assert derive_sku(name, DEFAULT_PATTERN) == sku


@pytest.mark.parametrize(
    ("text", "safe"),
    [("../../etc/passwd", "etc_passwd"), ("Café crème.jpg", "Cafe_creme.jpg"), ("..", "unnamed")],
)
def test_safe_component_never_escapes_a_folder(text: str, safe: str):
    assert safe_component(text) == safe


def test_image_ids_are_unique_even_when_names_collide():
    ids = image_ids(["a b.jpg", "a_b.jpg", "x/IMG.jpg", "y/IMG.jpg", "IMG.jpg", "IMG.png"])
    assert len(set(ids.values())) == 6
    assert ids["x/IMG.jpg"] == "x__IMG"
    assert ids["IMG.jpg"].startswith("IMG-") and ids["IMG.png"].startswith("IMG-")
