"""Cutline's HTML pages, rendered from the Jinja2 templates in ``cutline/templates/``.

Every value a template shows is escaped by Jinja2's autoescaping (manifest text, SKUs, file
names, links), so a hostile brief or file name is text on the page, never markup; a
template that names a value it was not given fails instead of showing nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **values: Any) -> str:
    """The page of template ``name`` (e.g. ``review_page.html``) with ``values``."""
    return _environment().get_template(name).render(**values)
