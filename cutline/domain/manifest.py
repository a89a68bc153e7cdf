"""The shoot manifest: optional per-file SKU, category, campaign, channels, deadline, brief."""

from __future__ import annotations

import csv
import difflib
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from cutline.base.errors import ConfigError
from cutline.domain.items import ImageItem

KNOWN_COLUMNS = (
    "filename",
    "sku",
    "category",
    "campaign",
    "channels",
    "deadline",
    "brief",
    "reference",
)


@dataclass(frozen=True)
class ManifestRow:
    """One manifest line, cleaned; ``problems`` lists values that could not be used."""

    line: int
    filename: str
    sku: str = ""
    category: str = ""
    campaign: str = ""
    channels: tuple[str, ...] = ()
    deadline: datetime | None = None
    deadline_has_time: bool = False
    brief: str = ""
    reference: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass
class Manifest:
    """Manifest rows keyed by the file name they describe."""

    rows: dict[str, ManifestRow]
    unused_columns: tuple[str, ...] = ()

    def lookup(self, relative_name: str, names: ShootNames) -> ManifestRow | None:
        """The row for a shoot file: by its path in the shoot, else by a unique base name
        (both compared as `name_key`s)."""
        key = name_key(relative_name)
        if names.paths.get(key, 0) > 1:
            return None
        row = self.rows.get(key)
        if row is not None:
            return row
        base = key.rsplit("/", 1)[-1]
        if names.bases.get(base, 0) == 1:
            return self.rows.get(base)
        return None

    def ambiguous(self, relative_name: str, names: ShootNames) -> tuple[ManifestRow, int] | None:
        """A row that could describe this file and others, with how many files it matches:
        a bare base name several files share (day1/IMG_1.jpg, day2/IMG_1.jpg), or a path two
        files' names spell alike (the same name composed and decomposed). None may use it."""
        key = name_key(relative_name)
        if names.paths.get(key, 0) > 1 and key in self.rows:
            return self.rows[key], names.paths[key]
        if key in self.rows:
            return None
        base = key.rsplit("/", 1)[-1]
        if names.bases.get(base, 0) > 1 and base in self.rows:
            return self.rows[base], names.bases[base]
        return None


def _check_columns(columns: list[str], source: str) -> list[str]:
    normalised = [c.strip().lower() for c in columns]
    if "filename" not in normalised:
        hint = difflib.get_close_matches("filename", normalised, n=1, cutoff=0.6)
        raise ConfigError(
            f"Manifest {source} has no 'filename' column (columns found: {', '.join(columns)}).",
            hint=(f"Rename '{hint[0]}' to 'filename'." if hint else "Add a 'filename' column.")
            + " Columns: "
            + ", ".join(KNOWN_COLUMNS)
            + " (all but filename optional).",
        )
    for col in normalised:
        if col in KNOWN_COLUMNS:
            continue
        close = difflib.get_close_matches(col, KNOWN_COLUMNS, n=1, cutoff=0.75)
        if close:
            raise ConfigError(
                f"Manifest {source}: column '{col}' looks like a misspelling of '{close[0]}'.",
                hint=f"Rename it to '{close[0]}' (or to something clearly different to keep it as extra metadata).",
            )
    return normalised


DATE_ORDERS = ("", "day-first", "month-first")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ].*)?$")
_NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})$")


class AmbiguousDate(ValueError):
    """A numeric date whose day/month order the manifest does not say."""


def _parse_deadline(value: str, date_order: str = "") -> datetime:
    """ISO dates always; 31/12/2026-style dates only in the order the studio set (a shoot's
    manifest must never read 12/01 as January in one row and December in the next); dates
    with a month name (1 Dec 2026) as written."""
    if _ISO_DATE.match(value):
        return datetime.fromisoformat(value)
    numeric = _NUMERIC_DATE.match(value)
    if numeric:
        if date_order not in ("day-first", "month-first"):
            raise AmbiguousDate(value)
        first, second, year = (int(g) for g in numeric.groups())
        day, month = (first, second) if date_order == "day-first" else (second, first)
        return datetime(year if year > 99 else 2000 + year, month, day)
    if not re.search(r"[A-Za-z]{3}", value):
        raise ValueError(value)
    parsed = pd.to_datetime(value, errors="raise", utc=False)
    if pd.isna(parsed):
        raise ValueError(value)
    return parsed.to_pydatetime()


_LINE_BREAKS = "\t\n\r\v\f\x85\u2028\u2029"


# Characters a spreadsheet or a copy from a web page can hide in a cell: zero-width spaces and
# joiners, byte-order marks, soft hyphens, bidirectional overrides (Unicode category Cf), and
# control characters (Cc): a NUL from a broken export, the bare carriage return Excel writes
# for a line break inside a cell.
def clean_text(value: object) -> str:
    """A cell as the studio meant it: Unicode-normalised (NFKC: no-break spaces become
    spaces, ligatures letters, macOS's decomposed accents composed), line breaks and tabs
    made spaces, invisible format and control characters removed, trimmed."""
    text = unicodedata.normalize("NFKC", str(value))
    kept = (
        " " if c in _LINE_BREAKS else c
        for c in text
        if c in _LINE_BREAKS or unicodedata.category(c) not in ("Cf", "Cc")
    )
    return "".join(kept).strip()


def name_key(name: str) -> str:
    """A file's path in the shoot as a manifest row and the file are matched: cleaned like
    every manifest cell, so 'café.jpg' written by macOS (decomposed, NFD) matches the row
    typed as 'café.jpg' (composed), and a ligature 'ﬁ' matches 'fi'."""
    return clean_text(name.replace("\\", "/"))


def shoot_path(cell: str) -> str:
    """A filename cell as a path inside the shoot: '/' separators, without a leading './' or
    '/'. Leading dots of a name are kept: '.retouch/x.jpg' is not 'retouch/x.jpg'."""
    path = cell.strip().replace("\\", "/")
    while path.startswith(("./", "/")):
        path = path[1:] if path.startswith("/") else path[2:]
    return path


def is_hidden(path: str) -> bool:
    """Whether a path in the shoot is hidden (a name or folder starting with '.'), which
    Cutline never treats as an input."""
    return any(part.startswith(".") for part in path.split("/"))


class ShootNames:
    """How many files of the shoot share each matching key, whole path and base name: a row
    that could describe several files (IMG_1.jpg in two folders, or two names that differ
    only in their Unicode form) must describe none of them."""

    def __init__(self, relative_names: list[str]) -> None:
        self.paths: dict[str, int] = {}
        self.bases: dict[str, int] = {}
        for name in relative_names:
            key = name_key(name)
            self.paths[key] = self.paths.get(key, 0) + 1
            base = key.rsplit("/", 1)[-1]
            self.bases[base] = self.bases.get(base, 0) + 1


_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _check_shape(text: str, source: str) -> None:
    """Refuse a CSV whose rows do not line up with its header, before any value is read:
    a row with more fields than the header would otherwise shift every column."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise ConfigError(
            f"Manifest {source} is empty.", hint="Save it as UTF-8 CSV with a header row."
        )
    if len(header) == 1:
        for sep, name in _SEPARATORS.items():
            if sep in header[0]:
                raise ConfigError(
                    f"Manifest {source} separates its columns with {name}, not commas "
                    f"(header: {header[0]!r}).",
                    hint="Export it as CSV with commas (comma-separated values) and run again.",
                )
    for record in rows:
        if len(record) > len(header):
            raise ConfigError(
                f"Manifest {source} line {rows.line_num} has {len(record)} fields but the header "
                f"has {len(header)}: most likely a value with an unquoted comma "
                f"(e.g. a brief like 'on white, centred').",
                hint='Put such values in double quotes ("on white, centred") and run again; no '
                "image was read.",
            )


_CHANNEL_SPLIT = re.compile(r"[;,]")


def clean_category(value: object) -> str:
    """A category as the rules see it: cleaned and lower-case (aliases are the rules' job).
    Evaluation sets use it too, so eval routes exactly as a shoot does."""
    return clean_text(value).lower()


def parse_manifest(data: bytes, source: str, date_order: str = "") -> Manifest:
    """Read a manifest CSV with pandas and validate it.

    Structural problems (no filename column, a misspelled column, duplicate file
    names) stop the run with a ConfigError; a bad value in one row (an unparseable
    deadline) is kept as a problem on that row so only that image fails.
    """
    try:
        text = data.decode("utf-8-sig")
        _check_shape(text, source)
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            index_col=False,  # never take the first column as the index
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(
            f"Manifest {source} is not a readable CSV ({exc}).",
            hint="Save it as UTF-8 CSV with a header row.",
        ) from None
    frame = frame.map(clean_text)
    columns = _check_columns([clean_text(c) for c in frame.columns], source)
    frame.columns = columns
    extra_cols = [c for c in columns if c not in KNOWN_COLUMNS]
    rows: dict[str, ManifestRow] = {}
    for index, record in enumerate(frame.to_dict(orient="records")):
        line = index + 2  # header is line 1
        filename = shoot_path(str(record.get("filename", "")))
        if not filename:
            continue
        if filename in rows:
            raise ConfigError(
                f"Manifest {source}: '{filename}' is listed twice (lines {rows[filename].line} and {line}).",
                hint="Keep one row per file.",
            )
        problems: list[str] = []
        deadline = None
        has_time = False
        raw_deadline = str(record.get("deadline", "")).strip()
        if raw_deadline:
            try:
                deadline = _parse_deadline(raw_deadline, date_order)
                has_time = (len(raw_deadline) > 10 and bool(_ISO_DATE.match(raw_deadline))) or (
                    deadline.hour,
                    deadline.minute,
                    deadline.second,
                ) != (0, 0, 0)
            except AmbiguousDate:
                problems.append(
                    f"manifest line {line}: deadline '{raw_deadline}' could be day/month or "
                    "month/day; write it as YYYY-MM-DD, or set CUTLINE_MANIFEST_DATE_ORDER to "
                    "day-first or month-first for the studio's format"
                )
            except (ValueError, TypeError, pd.errors.OutOfBoundsDatetime):
                problems.append(
                    f"manifest line {line}: deadline '{raw_deadline}' is not a date (use YYYY-MM-DD or ISO 8601)"
                )
        channels = tuple(
            c.strip() for c in _CHANNEL_SPLIT.split(str(record.get("channels", ""))) if c.strip()
        )
        rows[filename] = ManifestRow(
            line=line,
            filename=filename,
            sku=str(record.get("sku", "")).strip(),
            category=clean_category(record.get("category", "")),
            campaign=str(record.get("campaign", "")).strip(),
            channels=channels,
            deadline=deadline,
            deadline_has_time=has_time,
            brief=str(record.get("brief", "")).strip(),
            reference=str(record.get("reference", "")).strip(),
            extra={c: str(record.get(c, "")) for c in extra_cols},
            problems=tuple(problems),
        )
    return Manifest(rows=rows, unused_columns=tuple(extra_cols))


def deadline_text(row: ManifestRow) -> str:
    """The deadline as ISO text: a date alone stays a date (due by the end of that day)."""
    if row.deadline is None:
        return ""
    return row.deadline.isoformat() if row.deadline_has_time else row.deadline.date().isoformat()


def derive_sku(relative_name: str, pattern: str) -> str:
    """SKU from a file name when the manifest gives none: the ``sku`` group of ``pattern``.

    With the default pattern, 'ABC-123_front.jpg' gives 'ABC-123' (the stem up to the
    first underscore) and 'ABC-123.jpg' gives 'ABC-123'.
    """
    stem = relative_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    match = re.match(pattern, stem)
    if match and match.groupdict().get("sku"):
        return match.group("sku")
    return stem


MANIFEST_ROW_MARK = "#manifest-line-"


def manifest_row_item(row: ManifestRow, manifest_uri: str, index: int) -> ImageItem:
    """The ledger's record of a manifest row that names no file of the shoot: failed, with
    the row's data, so the ledger accounts for every manifest row as well as every file."""
    item = ImageItem(
        index=index,
        source=f"{manifest_uri}{MANIFEST_ROW_MARK}{row.line}",
        source_name=row.filename,
        image_id=f"manifest-line-{row.line}",
        sku=row.sku,
        category=row.category,
        campaign=row.campaign,
        deadline=deadline_text(row),
        manifest_line=row.line,
    )
    if is_hidden(row.filename):
        why = (
            f"manifest line {row.line} names '{row.filename}', a hidden file or folder (its "
            "name starts with '.'): Cutline never takes hidden files as images. Move the file "
            "out of the hidden folder (or rename it) and correct the row, then rerun the job."
        )
    else:
        why = (
            f"no file for this manifest row (line {row.line} names '{row.filename}'). Add the "
            "file to the shoot folder, or correct or remove the row, then rerun the job."
        )
    item.fail("manifest", why)
    return item


def is_manifest_row(source: str) -> bool:
    """Whether a ledger source is a manifest row without a file (not a file of the shoot)."""
    return MANIFEST_ROW_MARK in source
