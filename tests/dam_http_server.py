"""A small real REST DAM for the HTTP adapter's tests: stores assets in memory, records every
request, checks the credential, and answers 429/500 on demand; on demand it also ignores the
Idempotency-Key and commits a registration slowly, answering only after the client gave up."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class DamState:
    """Assets, files, requests and the failures still to inject."""

    token: str
    assets: dict[str, dict] = field(default_factory=dict)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str], bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (method, path, query, body) of the one request the failures are kept for, once seen.
    pinned: tuple[str, str, str, bytes] | None = None
    pin: bool = False
    pin_method: str = ""  # only a request of this method is pinned ("": any)
    # A POST with a key already registered answers that asset (as the API promises) unless
    # this is off: then every POST registers a new asset, as DAMs that ignore the key do.
    honour_idempotency_key: bool = True
    # (commit after, answer after, then unavailable for) for each of the next registrations.
    slow_creates: list[tuple[float, float, int]] = field(default_factory=list)

    def commit_slowly(
        self, commit_after: float, answer_after: float, times: int = 1, then_unavailable: int = 0
    ) -> None:
        """The next ``times`` registrations (POST /assets) are stored only ``commit_after``
        seconds after they arrive and answered ``answer_after`` seconds after (a DAM slower
        than the client's timeout: the asset exists although the client never hears so);
        from the moment each arrives, the next ``then_unavailable`` other requests get 503."""
        with self.lock:
            self.slow_creates.extend([(commit_after, answer_after, then_unavailable)] * times)

    def create(self, data: dict, key: str | None) -> tuple[int, dict]:
        """Register an asset (hold the lock): 201 and the new asset, or 200 and the one
        already registered under ``key`` when the key is honoured."""
        if self.honour_idempotency_key:
            existing = [a for a in self.assets.values() if a.get("idempotencyKey") == key]
            if existing:
                return 200, existing[0]
        data["id"] = "dam-" + uuid.uuid4().hex[:12]
        self.assets[data["id"]] = data
        return 201, data

    def fail_next(
        self,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        echo: bool = False,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and headers, e.g. Retry-After);
        ``echo`` puts the request's headers, credentials included, into the error body, as
        careless servers do."""
        with self.lock:
            self.failures.extend([(status, headers or {}, echo)] * times)

    def fail_one_request(self, status: int, times: int, method: str = "") -> None:
        """Answer the first request that arrives (of ``method``, if given), and its next
        ``times - 1`` repeats (the client's retries: same method, path, query and body), with
        ``status``; other requests in between, e.g. for other images registering at the same
        time, are served. One image's call fails after its retries however the images
        interleave."""
        with self.lock:
            self.failures.extend([(status, {}, False)] * times)
            self.pin, self.pin_method = True, method

    def take_failure(self, request: tuple[str, str, str, bytes]):
        """The failure to answer ``request`` with, if any (hold the lock)."""
        if not self.failures:
            return None
        if self.pin:
            if self.pinned is None:
                if self.pin_method and request[0] != self.pin_method:
                    return None
                self.pinned = request
            elif self.pinned != request:
                return None
        return self.failures.pop(0)


class _Handler(BaseHTTPRequestHandler):
    """The DAM's HTTP API over ``state`` (set per server by `_handler`)."""

    state: DamState

    def log_message(self, *args) -> None:  # keep test output quiet
        return

    def _send(self, status: int, payload=None, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.state.lock:
            self.state.requests.append(
                Recorded(
                    self.command,
                    url.path,
                    parse_qs(url.query),
                    dict(self.headers.items()),
                    body,
                )
            )
            failure = self.state.take_failure((self.command, url.path, url.query, body))
        if failure is not None:
            echoed = {"request_headers": dict(self.headers.items())} if failure[2] else {}
            self._send(failure[0], {"error": "injected", **echoed}, failure[1])
            return
        if self.headers.get("Authorization") != f"Bearer {self.state.token}":
            self._send(401, {"error": "bad credential"})
            return
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.state.lock:
            slow = (
                self.state.slow_creates.pop(0)
                if self._creating(parts) and self.state.slow_creates
                else None
            )
            if slow is None:
                self._route(parts, query, body)
                return
            commit_after, answer_after, unavailable = slow
            self.state.failures.extend([(503, {}, False)] * unavailable)
        time.sleep(commit_after)  # other requests are served meanwhile
        with self.state.lock:
            status, asset = self.state.create(json.loads(body), self.headers.get("Idempotency-Key"))
        time.sleep(max(0.0, answer_after - commit_after))
        with contextlib.suppress(OSError):  # the client stopped waiting long ago
            self._send(status, asset)

    def _creating(self, parts: list[str]) -> bool:
        return parts == ["assets"] and self.command == "POST"

    def _route(self, parts: list[str], query: dict[str, str], body: bytes) -> None:
        if parts == ["assets"] and self.command == "GET":
            items = [
                a
                for a in self.state.assets.values()
                if all(
                    a.get(k) == v
                    for k, v in (
                        ("idempotencyKey", query.get("idempotency_key")),
                        ("jobId", query.get("job_id")),
                    )
                    if v
                )
            ]
            self._send(200, {"items": items})
        elif self._creating(parts):
            self._send(*self.state.create(json.loads(body), self.headers.get("Idempotency-Key")))
        elif len(parts) == 2 and parts[0] == "assets" and parts[1] in self.state.assets:
            if self.command == "GET":
                self._send(200, self.state.assets[parts[1]])
            elif self.command == "PUT":
                data = json.loads(body)
                data["id"] = parts[1]
                self.state.assets[parts[1]] = data
                self._send(200, data)
            else:
                self._send(405)
        elif (
            len(parts) == 4
            and parts[0] == "assets"
            and parts[2] == "files"
            and self.command == "PUT"
        ):
            self.state.files[(parts[1], parts[3])] = body
            self._send(200, {"url": f"dam://{parts[1]}/{parts[3]}"})
        else:
            self._send(404, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_PATCH = _handle


def _handler(state: DamState) -> type[_Handler]:
    """A handler class of the DAM serving ``state``."""
    return type("Handler", (_Handler,), {"state": state})


class DamServer:
    """Start/stop the DAM on a free loopback port."""

    def __init__(self, token: str) -> None:
        self.state = DamState(token=token)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> DamServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
