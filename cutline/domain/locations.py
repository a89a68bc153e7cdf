"""Checks on the paths and URIs a run is given (from the UI, the CLI or a deployment), so a
form field cannot point Cutline outside the studio's configured storage."""

from __future__ import annotations

import os
import re

from cutline.base.errors import ConfigError
from cutline.base.settings import CutlineSettings, get_settings
from cutline.base.storage import protocol_of

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _normalised_uri(value: str) -> str:
    scheme, rest = value.split("://", 1)
    return f"{scheme.lower()}://{rest.strip('/')}"


def _under(child: str, root: str) -> bool:
    return child == root or child.startswith(root.rstrip("/") + "/")


def _inside_roots(value: str, scheme: str, roots: list[str]) -> bool:
    if scheme == "file":
        real = os.path.realpath(os.path.expanduser(value))
        return any(
            _under(real, os.path.realpath(os.path.expanduser(root)))
            for root in roots
            if "://" not in root
        )
    uri = _normalised_uri(value)
    return any(_under(uri, _normalised_uri(root)) for root in roots if "://" in root)


def check_location(value: str, role: str, settings: CutlineSettings | None = None) -> str:
    """Refuse a path or URI that uses a scheme outside ``allowed_schemes``, contains a '..'
    component or control characters, or lies outside ``allowed_roots`` (when set).

    ``role`` names the field in the error (e.g. "shoot", "manifest", "output root").
    Returns the value unchanged when it is acceptable.
    """
    settings = settings or get_settings()
    if not value or not value.strip():
        raise ConfigError(f"The {role} is empty.", hint=f"Give the {role} as a path or URI.")
    shown = _CONTROL.sub("?", value)
    if _CONTROL.search(value):
        raise ConfigError(
            f"The {role} {shown!r} contains control characters.",
            hint="Type the path again without pasted control characters.",
        )
    scheme = protocol_of(value)
    allowed = [s.lower() for s in settings.allowed_schemes]
    if scheme not in allowed:
        raise ConfigError(
            f"The {role} {shown!r} uses the scheme '{scheme}', which this studio does not allow.",
            hint=f"Use one of: {', '.join(allowed)} (setting CUTLINE_ALLOWED_SCHEMES).",
        )
    body = value.split("://", 1)[1] if "://" in value else value
    if any(part == ".." for part in re.split(r"[/\\]", body)):
        raise ConfigError(
            f"The {role} {shown!r} contains '..'.",
            hint="Give the full path without '..' components.",
        )
    if settings.allowed_roots and not _inside_roots(value, scheme, settings.allowed_roots):
        raise ConfigError(
            f"The {role} {shown!r} is outside the folders this studio allows.",
            hint=f"Use a location under one of: {', '.join(settings.allowed_roots)} "
            "(setting CUTLINE_ALLOWED_ROOTS).",
        )
    return value
