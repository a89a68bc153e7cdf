"""A read-only link to a shoot's contact sheet for the client, served by the local stack.

The sign-off run registers the sheet's folder under the data root; the serve process answers
GET /shoots/<job>/<file> from that folder only (no listing, no other files, no writes)."""

from __future__ import annotations

import json
import mimetypes
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cutline.base.settings import CutlineSettings
from cutline.domain.items import validate_job_id

_FILE = re.compile(r"^(thumbs/)?[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(html|png)$")


def _registry(settings: CutlineSettings) -> Path:
    return settings.data_root / "shares"


def share_url(settings: CutlineSettings, job_id: str) -> str:
    """The client's read-only link to a shoot's contact sheet."""
    return f"http://{settings.share_host}:{settings.resolved_share_port}/shoots/{job_id}/index.html"


def register_share(settings: CutlineSettings, job_id: str, folder: str) -> str | None:
    """Make a local contact-sheet folder reachable by its link; the link, or None when the
    sheet is not on a local disk (share it from the object store instead)."""
    validate_job_id(job_id)
    if "://" in folder:
        return None
    registry = _registry(settings)
    registry.mkdir(parents=True, exist_ok=True)
    (registry / f"{job_id}.json").write_text(json.dumps({"folder": str(Path(folder).resolve())}))
    return share_url(settings, job_id)


def _resolve(settings: CutlineSettings, path: str) -> Path | None:
    """The file a request path names, if it is one a client may read."""
    parts = path.split("?", 1)[0].strip("/").split("/", 2)
    if len(parts) != 3 or parts[0] != "shoots" or not _FILE.match(parts[2]):
        return None
    try:
        job_id = validate_job_id(parts[1])
        record = json.loads((_registry(settings) / f"{job_id}.json").read_text())
    except (ValueError, OSError):
        return None
    folder = Path(record["folder"]).resolve()
    target = (folder / parts[2]).resolve()
    return target if target.is_file() and target.is_relative_to(folder) else None


def start_share_server(settings: CutlineSettings) -> ThreadingHTTPServer:
    """Serve registered contact sheets read-only, in a background thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return

        def do_GET(self) -> None:
            target = _resolve(settings, self.path)
            if target is None:
                self.send_error(404, "No such contact sheet page")
                return
            body = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", mimetypes.guess_type(target.name)[0] or "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.send_error(405, "The contact sheet is read-only")

        do_PUT = do_DELETE = do_POST

    server = ThreadingHTTPServer((settings.share_host, settings.resolved_share_port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="contact-sheet-share").start()
    return server
