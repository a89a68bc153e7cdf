"""Safe, stable names for files Cutline writes, whatever the input names or SKUs contain."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_LEN = 120


def safe_component(text: str, fallback: str = "unnamed") -> str:
    """A single path component made only of letters, digits, '.', '_' and '-'.

    Unicode is transliterated where it can be (é -> e), anything else becomes '_',
    and leading dots are removed so the result can never be '.', '..' or hidden.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", ascii_text).strip("._-")
    if not cleaned:
        cleaned = fallback
    return cleaned[:_MAX_LEN]


def short_hash(text: str, length: int = 8) -> str:
    """A short stable hex digest of ``text`` for disambiguating names."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


# Joins a name to its disambiguating hash. safe_component never produces it, so no input file
# name can imitate the disambiguated id of another file (e.g. a file named 'x-1a2b3c4d.tif').
DISAMBIGUATOR = "~"


def image_ids(relative_names: list[str]) -> dict[str, str]:
    """A unique, path-safe id per input file, readable where the name allows.

    The id is the file's path inside the shoot without its suffix, sanitised, with
    folders joined by '__'. When two files would get the same id (e.g. 'a b.jpg' and
    'a_b.jpg', or the same name with two suffixes), each gets '~' and a hash of its original
    path appended; a sanitised name never contains '~', so ids are unique by construction.
    """
    base: dict[str, str] = {}
    for rel in relative_names:
        stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
        parts = [safe_component(p) for p in stem.split("/") if p]
        base[rel] = "__".join(parts) or "unnamed"
    counts: dict[str, int] = {}
    for value in base.values():
        counts[value] = counts.get(value, 0) + 1
    ids = {
        rel: (f"{value}{DISAMBIGUATOR}{short_hash(rel)}" if counts[value] > 1 else value)
        for rel, value in base.items()
    }
    if len(set(ids.values())) < len(ids):  # two paths share a short hash: use the whole hash
        ids = {
            rel: (f"{value}{DISAMBIGUATOR}{short_hash(rel, 40)}" if counts[value] > 1 else value)
            for rel, value in base.items()
        }
    return ids


def hidden_characters(text: str) -> list[str]:
    """The control and format characters in ``text`` (NUL, escapes, line breaks, zero-width
    and bidirectional marks such as U+202E, which displays a name backwards), as U+XXXX.
    A name recorded in the DAM must read as what it is."""
    return [
        f"U+{ord(c):04X}"
        for c in text
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
    ]


def person_name_problem(name: str, field: str) -> str:
    """Why ``name`` cannot be recorded as who decided, or '' when it can."""
    if not name.strip():
        return f"enter your name in {field}: the DAM records who decided."
    hidden = hidden_characters(name)
    if hidden:
        return (
            f"{field} holds invisible or control characters ({', '.join(sorted(set(hidden)))}); "
            "type your name again with letters, spaces and punctuation only."
        )
    if len(name) > 200:
        return f"{field} is {len(name)} characters long; enter a name of at most 200."
    return ""
