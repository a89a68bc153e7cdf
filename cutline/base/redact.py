"""Keep secrets out of every message: a DAM's error body, a URL with a password in it, an
exception text that echoes a request's headers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "[redacted]"
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]*:[^/@\s]*@")
_AUTH_HEADER = re.compile(
    r"(?i)(authorization|x-api-key|api-key)(['\"]?\s*[:=]\s*['\"]?)[^'\",\s}]+(\s+[^'\",\s}]+)?"
)


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    netloc = f"{HIDDEN}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret, any password in a URL and any authorization header
    value replaced by a marker (a message can then go into a ledger, a log or the UI)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, HIDDEN)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{HIDDEN}@", text)
    return _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{HIDDEN}", text)
