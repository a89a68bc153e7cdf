"""The shoot manifest: optional per-file SKU, category, campaign, channels, deadline, brief."""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from cutline.base.errors import ConfigError

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

    def lookup(self, relative_name: str, basename_counts: dict[str, int]) -> ManifestRow | None:
        """The row for a shoot file: by its path in the shoot, else by a unique base name."""
        row = self.rows.get(relative_name)
        if row is not None:
            return row
        base = relative_name.rsplit("/", 1)[-1]
        if basename_counts.get(base, 0) == 1:
            return self.rows.get(base)
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


def _parse_deadline(value: str) -> datetime:
    parsed = pd.to_datetime(value, errors="raise", utc=False, dayfirst=False)
    if pd.isna(parsed):
        raise ValueError(value)
    return parsed.to_pydatetime()


_CHANNEL_SPLIT = re.compile(r"[;,]")


def clean_category(value: object) -> str:
    """A category as the rules see it: trimmed and lower-case (aliases are the rules' job).
    Evaluation sets use it too, so eval routes exactly as a shoot does."""
    return str(value).strip().lower()


def parse_manifest(data: bytes, source: str) -> Manifest:
    """Read a manifest CSV with pandas and validate it.

    Structural problems (no filename column, a misspelled column, duplicate file
    names) stop the run with a ConfigError; a bad value in one row (an unparseable
    deadline) is kept as a problem on that row so only that image fails.
    """
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"Manifest {source} is not a readable CSV ({exc}).",
            hint="Save it as UTF-8 CSV with a header row.",
        ) from None
    columns = _check_columns(list(frame.columns), source)
    frame.columns = columns
    extra_cols = [c for c in columns if c not in KNOWN_COLUMNS]
    rows: dict[str, ManifestRow] = {}
    for index, record in enumerate(frame.to_dict(orient="records")):
        line = index + 2  # header is line 1
        filename = str(record.get("filename", "")).strip().replace("\\", "/").lstrip("./")
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
                deadline = _parse_deadline(raw_deadline)
                has_time = len(raw_deadline) > 10
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
