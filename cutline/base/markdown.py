"""Text from outside (manifest values, file names, retouchers' notes) made inert in markdown.

The Prefect UI renders artifacts and Resume-form descriptions as markdown. A manifest brief
holding ``![x](http://host/beacon.png)`` would load a remote image in every retoucher's
browser, and one holding a line such as ``> **Your last answer could not be used:** ...``
would forge Cutline's own words in the form. Every value Cutline did not write itself goes
through `inert` (running text, table cells) or `code` (paths and URIs), never raw.
"""

from __future__ import annotations

import re
import unicodedata

# Every ASCII punctuation character may be backslash-escaped in CommonMark (and GFM), and an
# escaped one is always literal: no emphasis, link, image, HTML tag, entity, heading, list,
# quote, table cell break or autolink (``http\://`` is no longer a URL) can start from it.
_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def visible_text(value: object) -> str:
    """``value`` on one line, without control or format characters: line breaks and tabs
    become spaces; NUL, escapes, zero-width and bidirectional overrides (U+202E, which
    shows a name or file name backwards) are dropped."""
    text = str(value)
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in "\t\n\r\v\f\x85\u2028\u2029":
            kept.append(" ")
        elif category in ("Cc", "Cf", "Cs", "Co", "Cn") and char != " ":
            continue
        else:
            kept.append(char)
    return " ".join("".join(kept).split())


def shortened(value: object, width: int, *, middle: bool = False) -> str:
    """``value`` on one line in at most ``width`` characters: cut with an ellipsis at the
    end, or in the ``middle`` (file names keep their start and extension), so one long cell
    does not push a table's other columns out of the UI's view. The full text is in the
    ledger."""
    text = visible_text(value)
    if len(text) <= width:
        return text
    if middle:
        head = (width - 1) // 2
        return text[:head] + "…" + text[-(width - 1 - head) :]
    return text[: width - 1].rstrip() + "…"


def inert(value: object) -> str:
    """``value`` as literal markdown text: one line, every markdown character escaped."""
    return _PUNCTUATION.sub(r"\\\1", visible_text(value))


def code(value: object) -> str:
    """``value`` as an inline code span that no content can end early: the fence is one
    backtick longer than the longest run inside it (CommonMark), on one line."""
    text = visible_text(value)
    if not text:
        return "-"
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_ESCAPED = re.compile(r"\\([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def unescaped(markdown: str) -> str:
    """Markdown written with `inert` values, as a terminal shows it: the escapes taken out,
    so a file name reads 'IMG_1.jpg', not 'IMG\\_1\\.jpg'."""
    return _ESCAPED.sub(r"\1", markdown)
