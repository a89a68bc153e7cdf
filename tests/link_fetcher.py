"""Open a shared link as a client at another desk would: over HTTP only, standard library only.

Run as ``python -I -S tests/link_fetcher.py URL`` in a process of its own, with its own HOME
and working folder and no Cutline setting: it cannot read the data root or import Cutline,
so whatever it gets came over the network. It fetches URL and, from every HTML page it gets,
every link and picture on the same host (pages followed), and prints one JSON line per
fetch: url, status, content type, content disposition, the body's first bytes (hex).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in {("a", "href"), ("img", "src")}:
                self.found.append((tag, value))


def _fetch(url: str) -> tuple[dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            body, status, headers = response.read(), response.status, response.headers
    except urllib.error.HTTPError as exc:
        body, status, headers = exc.read(), exc.code, exc.headers
    return {
        "url": url,
        "status": status,
        "type": headers.get("Content-Type", ""),
        "disposition": headers.get("Content-Disposition", ""),
        "head": body[:8].hex(),
        "error": body[:300].decode("utf-8", "replace") if status >= 400 else "",
    }, body


def main(start: str, limit: int = 400) -> None:
    host = urllib.parse.urlsplit(start).netloc
    queue, seen = [(start, "start")], {start}
    while queue and len(seen) <= limit:
        url, how = queue.pop(0)
        result, body = _fetch(url)
        result["how"] = how
        print(json.dumps(result), flush=True)
        if result["status"] != 200 or not result["type"].startswith("text/html"):
            continue
        parser = _Links()
        parser.feed(body.decode("utf-8"))
        for tag, link in parser.found:
            target = urllib.parse.urldefrag(urllib.parse.urljoin(url, link)).url
            if urllib.parse.urlsplit(target).netloc != host or target in seen:
                continue
            seen.add(target)
            queue.append((target, tag))


if __name__ == "__main__":
    main(sys.argv[1])
