"""Manifest CSV: columns, per-row problems, matching files, SKUs from file names."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cutline.base.errors import ConfigError
from cutline.base.naming import image_ids, safe_component
from cutline.domain.manifest import ShootNames, derive_sku, parse_manifest

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
    counts = ShootNames(["day1/IMG_1.jpg", "day1/IMG_2.jpg", "day2/IMG_2.jpg"])
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
    assert ids["IMG.jpg"].startswith("IMG~") and ids["IMG.png"].startswith("IMG~")


def test_a_file_named_like_another_files_disambiguated_id_cannot_take_it():
    from cutline.base.naming import short_hash

    # x.jpg and x.png need disambiguating; a third file is named after what x.jpg's id was
    # (and would be under a '-' suffix): it must not share an output name with either.
    names = ["x.jpg", "x.png", f"x-{short_hash('x.jpg')}.tif", f"x~{short_hash('x.jpg')}.tif"]
    ids = image_ids(names)
    assert len(set(ids.values())) == len(names), ids


def test_an_unquoted_comma_stops_the_run_instead_of_shifting_columns():
    # The first data row has one field too many: pandas alone would take the file names as
    # the index and shift every column (SKUs in the category column, glassware lost).
    data = (
        b"filename,sku,category,brief\n"
        b"GL-1.jpg,GL-1,glassware,on white, centred\n"
        b"FW-1.jpg,FW-1,footwear,plain\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_manifest(data, "m.csv")
    assert "line 2 has 5 fields but the header has 4" in str(info.value)
    assert "unquoted comma" in str(info.value) and "double quotes" in info.value.hint


def test_a_quoted_comma_is_one_value():
    data = b'filename,sku,category,brief\nGL-1.jpg,GL-1,glassware,"on white, centred"\n'
    row = parse_manifest(data, "m.csv").rows["GL-1.jpg"]
    assert (row.sku, row.category, row.brief) == ("GL-1", "glassware", "on white, centred")


@pytest.mark.parametrize(("sep", "word"), [(";", "semicolons"), ("\t", "tabs")])
def test_a_separator_that_is_not_a_comma_is_named(sep, word):
    data = sep.join(["filename", "sku", "category"]).encode() + b"\na.jpg" + sep.encode() + b"A\n"
    with pytest.raises(ConfigError) as info:
        parse_manifest(data, "m.csv")
    assert f"separates its columns with {word}, not commas" in str(info.value)


def test_invisible_characters_are_removed_from_every_value():
    data = "filename,sku,category\nGL-1.jpg,\u00a0GL-1\u200b,glass\u200bware\ufeff\n".encode()
    row = parse_manifest(data, "m.csv").rows["GL-1.jpg"]
    assert row.category == "glassware" and row.sku == "GL-1"


Y = date.today().year + 5  # a year to write deadlines in; parsing does not depend on today


@pytest.mark.parametrize(
    ("order", "raw", "expected"),
    [
        # ISO dates are never ambiguous, whatever the setting.
        ("", f"{Y}-02-03", date(Y, 2, 3)),
        # A month name says which is which.
        ("", f"3 Feb {Y}", date(Y, 2, 3)),
        # Numeric dates follow the studio's setting, the same way in every row.
        ("day-first", f"12/01/{Y}", date(Y, 1, 12)),
        ("day-first", f"31/12/{Y}", date(Y, 12, 31)),
        ("month-first", f"12/01/{Y}", date(Y, 12, 1)),
    ],
)
def test_deadlines_are_read_in_one_order(order, raw, expected):
    row = parse_manifest(f"filename,deadline\na.jpg,{raw}\n".encode(), "m.csv", order).rows["a.jpg"]
    assert not row.problems and row.deadline is not None and row.deadline.date() == expected


def test_a_numeric_date_without_a_date_order_fails_its_row_only():
    manifest = parse_manifest(
        f"filename,deadline\na.jpg,31/12/{Y}\nb.jpg,12/01/{Y}\nc.jpg,{Y}-01-12\n".encode(),
        "m.csv",
    )
    for name in ("a.jpg", "b.jpg"):
        (problem,) = manifest.rows[name].problems
        assert "could be day/month or month/day" in problem and "MANIFEST_DATE_ORDER" in problem
    assert not manifest.rows["c.jpg"].problems
    # 31/12 cannot be month-first: the row says it is not a date rather than guessing.
    wrong = parse_manifest(f"filename,deadline\na.jpg,31/12/{Y}\n".encode(), "m.csv", "month-first")
    assert "is not a date" in wrong.rows["a.jpg"].problems[0]


def test_a_row_naming_a_file_name_shared_by_sub_folders_fails_those_files(tmp_path):
    from PIL import Image

    from tasks.ingest import plan_shoot
    from tests.contexts import shoot_context

    shoot = tmp_path / "shoot"
    for day in ("day1", "day2"):
        (shoot / day).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(shoot / day / "IMG_1.jpg")
    (shoot / "manifest.csv").write_text("filename,sku,category\nIMG_1.jpg,GL-1,glassware\n")
    ctx = shoot_context(tmp_path, "AMBIG-1", shoot=shoot)
    plan = plan_shoot.fn(ctx, str(shoot / "manifest.csv"), 10)
    items = plan.items()
    assert [i.source_name for i in items] == ["day1/IMG_1.jpg", "day2/IMG_1.jpg"]
    for item in items:
        assert item.failed and "manifest line 2 names 'IMG_1.jpg'" in item.error
        assert "matches 2 files" in item.error and item.source_name in item.error
    assert plan.manifest_rows_without_files == []


# macOS writes file names decomposed (NFD: 'e' + U+0301); spreadsheets type them composed
# (NFC). A ligature 'ﬁ' (U+FB01) in a name is the letters 'fi' to a person. Either way the
# manifest row must reach its file: a glassware row that misses its file auto-publishes glass.
@pytest.mark.parametrize(
    ("file_name", "row_name"),
    [
        ("cafe\u0301-glass.jpg", "caf\u00e9-glass.jpg"),  # NFD file, NFC row
        ("caf\u00e9-glass.jpg", "cafe\u0301-glass.jpg"),  # NFC file, NFD row
        ("\ufb01ne-glass.jpg", "fine-glass.jpg"),  # ligature in the file name
        ("fine-glass.jpg", "\ufb01ne-glass.jpg"),  # ligature in the row
        ("day1/cafe\u0301.jpg", "caf\u00e9.jpg"),  # by a unique base name
    ],
)
def test_a_row_finds_its_file_whatever_the_unicode_form(file_name: str, row_name: str):
    manifest = parse_manifest(
        f"filename,sku,category\n{row_name},GL-1,glassware\n".encode(), "m.csv"
    )
    row = manifest.lookup(file_name, ShootNames([file_name, "other.jpg"]))
    assert row is not None and row.category == "glassware"


def test_two_files_whose_names_differ_only_in_unicode_form_share_no_row():
    # Linux keeps both 'café.jpg' spellings as two files: the row could be either, so neither
    # may take it (each fails with a reason instead of one silently getting the glass rules).
    names = ShootNames(["caf\u00e9.jpg", "cafe\u0301.jpg"])
    manifest = parse_manifest("filename,sku\ncaf\u00e9.jpg,A\n".encode(), "m.csv")
    for name in ("caf\u00e9.jpg", "cafe\u0301.jpg"):
        assert manifest.lookup(name, names) is None
        row, matches = manifest.ambiguous(name, names)
        assert row.sku == "A" and matches == 2


def test_a_hidden_folder_in_a_row_is_kept():
    # '.retouch/x.jpg' is a retoucher's hidden working copy, not the shoot's 'retouch/x.jpg'.
    manifest = parse_manifest(b"filename,sku\n.retouch/x.jpg,H\n./retouch/y.jpg,Y\n", "m.csv")
    assert set(manifest.rows) == {".retouch/x.jpg", "retouch/y.jpg"}
    names = ShootNames(["retouch/x.jpg", "retouch/y.jpg"])
    assert manifest.lookup("retouch/x.jpg", names) is None
    assert manifest.lookup("retouch/y.jpg", names).sku == "Y"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("glass\x00ware", "glassware"),  # a NUL from a broken export
        ("glassware\r", "glassware"),  # Excel's bare carriage return
        ("glass\u202eware", "glassware"),  # a bidirectional override
        ("\x1b[31mglassware", "[31mglassware"),  # an escape: dropped, the rest is plain text
    ],
)
def test_control_characters_are_removed_from_categories(cell: str, expected: str):
    data = b"filename,category\na.jpg," + cell.encode() + b"\n"
    assert parse_manifest(data, "m.csv").rows["a.jpg"].category == expected


def test_a_line_break_inside_a_quoted_value_is_a_space():
    manifest = parse_manifest(b'filename,sku,brief\na.jpg,"AB\r12","two\r\nlines"\n', "m.csv")
    row = manifest.rows["a.jpg"]
    assert row.sku == "AB 12" and row.brief == "two  lines"


def test_planning_a_shoot_with_hostile_names_and_many_rows_without_files(tmp_path):
    from PIL import Image

    from tasks.ingest import plan_shoot
    from tests.contexts import shoot_context

    shoot = tmp_path / "shoot"
    (shoot / ".retouch").mkdir(parents=True)
    (shoot / "retouch").mkdir()
    Image.new("RGB", (8, 8)).save(shoot / "cafe\u0301-glass.jpg")  # as macOS writes it
    Image.new("RGB", (8, 8)).save(shoot / "retouch" / "x.jpg")
    Image.new("RGB", (8, 8)).save(shoot / ".retouch" / "x.jpg")  # hidden: never an input
    (shoot / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    orphans = "".join(f"gone-{n:03}.jpg,G-{n},homeware\n" for n in range(300))
    (shoot / "manifest.csv").write_text(
        "filename,sku,category\ncaf\u00e9-glass.jpg,GL-1,glassware\n"
        ".retouch/x.jpg,RT-1,jewellery\n" + orphans,
        encoding="utf-8",
    )
    ctx = shoot_context(tmp_path, "NAMES-1", shoot=shoot)
    plan = plan_shoot.fn(ctx, str(shoot / "manifest.csv"), 16)
    items = {i.source_name: i for i in plan.items()}
    # The NFD file takes its NFC glassware row; the visible retouch/x.jpg does not take the
    # hidden folder's row, and that row says why it found no file.
    assert items["cafe\u0301-glass.jpg"].category == "glassware"
    assert items["cafe\u0301-glass.jpg"].sku == "GL-1"
    assert items["retouch/x.jpg"].category == "" and items["retouch/x.jpg"].sku == "x"
    assert "a hidden file or folder" in items[".retouch/x.jpg"].error
    # Hidden files are listed as ignored (the summary shows them), never silently dropped.
    ignored = sorted(uri.rsplit("/shoot/", 1)[1] for uri in plan.ignored)
    assert ignored == [".DS_Store", ".retouch/x.jpg"]
    # 300 rows without files share batches of their own: 2 image batches + 1, not 302.
    assert len(plan.refs) == 3
    assert len(plan.manifest_rows_without_files) == 301
