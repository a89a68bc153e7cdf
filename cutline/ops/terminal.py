"""What Cutline prints reaches the terminal as text, never as commands to the terminal.

File names, manifest values, retouchers' notes and error messages from servers are printed by
the CLI. An ESC or OSC sequence among them (``\\x1b]8;;http://...``, a title change, a cursor
move that hides the line before) would be obeyed by the terminal; a U+202E would print a name
backwards. Every byte the CLI writes goes through `TerminalText`, which drops them.
"""

from __future__ import annotations

import io
import re
import sys
from typing import TextIO

# C0 and C1 controls except tab and newline, DEL, and the bidirectional marks and overrides
# (Unicode format characters that reorder what follows).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """``text`` without terminal control sequences' introducers or bidirectional controls
    (ESC is dropped, so what followed it is shown as plain characters)."""
    return _UNSAFE.sub("", text)


class TerminalText(io.TextIOBase):
    """A text stream that writes to ``target`` what `terminal_safe` keeps, except the plain
    colour codes ``typer.secho`` adds (reset, bold, a foreground colour); any other sequence,
    such as "conceal" (ESC [ 8 m) that would hide the rest of a line, is taken apart."""

    _SGR = re.compile(r"\x1b\[(?:0|1|3[0-9]|9[0-7])m")

    def __init__(self, target: TextIO) -> None:
        self._target = target

    def write(self, text: str) -> int:
        parts = self._SGR.split(text)
        codes = self._SGR.findall(text)
        safe = "".join(
            terminal_safe(part) + (codes[i] if i < len(codes) else "")
            for i, part in enumerate(parts)
        )
        self._target.write(safe)
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._target.encoding

    def writable(self) -> bool:
        return True


def guard_standard_streams() -> None:
    """Route stdout and stderr through `TerminalText` for the rest of the process."""
    if not isinstance(sys.stdout, TerminalText):
        sys.stdout = TerminalText(sys.stdout)
    if not isinstance(sys.stderr, TerminalText):
        sys.stderr = TerminalText(sys.stderr)


def invoked_as() -> str:
    """How the person ran this CLI, to print in hints they can paste: ``cutline`` when that
    name on PATH is this program, else the path they typed (``.venv/bin/cutline`` after
    `scripts/setup.sh`, which puts nothing on PATH)."""
    import os
    import shutil

    typed = sys.argv[0] if sys.argv and sys.argv[0] else "cutline"
    if os.path.basename(typed) != "cutline":  # python -m cutline
        return f"{os.path.relpath(sys.executable)} -m cutline"
    on_path = shutil.which("cutline")
    if on_path and os.path.realpath(on_path) == os.path.realpath(typed):
        return "cutline"
    return (
        os.path.relpath(typed)
        if not os.path.isabs(typed) or typed.startswith(os.getcwd())
        else typed
    )
