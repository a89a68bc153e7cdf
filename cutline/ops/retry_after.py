"""Tell Prefect clients how soon to retry when the embedded server is briefly busy.

The embedded server keeps its catalog in SQLite, which takes one writer at a time: a write
that meets another one is answered "database is locked" and Prefect's server turns that into
HTTP 503 without a Retry-After header. Prefect's client then sleeps 2, 4, 8... seconds, most
of them idle: the other write took milliseconds. In a shoot that is a cutout batch, a review
request or a DAM registration standing still for seconds (measured: 10 such waits, about 25
thread-seconds, in one 40-image shoot; benchmarks/README.md).

`QuickRetryAfter` wraps the server's ASGI app and puts a Retry-After on each such 503 that
lacks one: short at first, growing with each busy answer to the same request (same client
address, method, path, query and body) until one like it is answered otherwise, so a server
that stays busy still gets its breathing space. (Prefect's server closes the connection after
such an answer, so a retry arrives on a new one: the connection cannot tell retries apart.)
Prefect's client honours the header (with jitter) and keeps its own retry count.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FIRST_WAIT_SECONDS = 0.25
GROWTH = 3.0
LONGEST_WAIT_SECONDS = 30.0
# A retry arrives after at most LONGEST_WAIT_SECONDS plus jitter: older answers are forgotten.
REMEMBER_SECONDS = 120.0
REMEMBER_AT_MOST = 10_000


class _RetryCounts:
    """How many busy answers each recent request (by fingerprint) has had, oldest first."""

    def __init__(self) -> None:
        self._seen: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def count_another(self, key: bytes, now: float) -> int:
        """Record one more busy answer to ``key``; return how many it had before this one."""
        with self._lock:
            while self._seen:
                oldest, (_, when) = next(iter(self._seen.items()))
                if now - when < REMEMBER_SECONDS and len(self._seen) < REMEMBER_AT_MOST:
                    break
                del self._seen[oldest]
            before = self._seen.pop(key, (0, now))[0]
            self._seen[key] = (before + 1, now)
            return before

    def forget(self, key: bytes) -> None:
        """``key`` was answered: its next busy answer is a first one again."""
        with self._lock:
            self._seen.pop(key, None)

    def __bool__(self) -> bool:
        return bool(self._seen)


def retry_wait(earlier_busy_answers: int) -> float:
    """Seconds a client should wait before retrying a request that was answered busy
    ``earlier_busy_answers`` times before: 0.25, 0.75, 2.25, 6.75, 20.25, then 30."""
    return min(LONGEST_WAIT_SECONDS, FIRST_WAIT_SECONDS * GROWTH**earlier_busy_answers)


class QuickRetryAfter:
    """ASGI middleware: a Retry-After on every 503 that has none (see the module docstring)."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self._counts = _RetryCounts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 503:
                    message = self._with_retry_after(message, _fingerprint(scope, body))
                elif self._counts:
                    self._counts.forget(_fingerprint(scope, body))
            await send(message)

        await self.app(scope, receive_and_keep, send_with_retry_after)

    def _with_retry_after(self, message: Message, key: bytes) -> Message:
        headers = list(message.get("headers") or [])
        if any(name.lower() == b"retry-after" for name, _ in headers):
            return message
        earlier = self._counts.count_another(key, self.clock())
        headers.append((b"retry-after", f"{retry_wait(earlier):.2f}".encode()))
        return {**message, "headers": headers}


def _fingerprint(scope: Scope, body: list[bytes]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    host = (scope.get("client") or ("", 0))[0]
    for part in (host, scope.get("method", ""), scope.get("path", "")):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(scope.get("query_string", b"") + b"\0")
    for chunk in body:
        digest.update(chunk)
    return digest.digest()


# How long a request from a browser (or any client that does not retry) is retried inside the
# server while the database stays busy, before its 503 is passed on.
PATIENT_FOR_SECONDS = 60.0


def retries_itself(scope: Scope) -> bool:
    """Whether the request comes from Prefect's own client, which honours Retry-After; the
    Prefect UI in a browser (and curl, a webhook) does not retry a 503 at all."""
    for name, value in scope.get("headers") or []:
        if name.lower() == b"user-agent":
            return value.lower().startswith(b"prefect/")
    return False


class PatientForBrowsers:
    """ASGI middleware: a request from a client that does not retry (the UI's Resume, Custom
    run, Retry buttons) is retried here while the server answers it busy (503: SQLite was
    locked by a running shoot's writes), with the waits of `retry_wait`, for up to
    ``patience`` seconds; the user sees the answer, not "database is locked".

    Retrying is safe: a busy answer means the request's transaction was rolled back. The
    request's body is kept to be sent again; a 503 and whatever the app raised after it
    (Starlette's error middleware re-raises) are dropped while there is time left.
    """

    def __init__(
        self,
        app: ASGIApp,
        patience: float = PATIENT_FOR_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        import asyncio

        self.app = app
        self.patience = patience
        self.clock = clock
        self.sleep = sleep or asyncio.sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or retries_itself(scope):
            await self.app(scope, receive, send)
            return
        body = await whole_body(receive)
        deadline = self.clock() + self.patience
        attempt = 0
        while True:
            wait = retry_wait(attempt)
            last_try = self.clock() + wait > deadline
            if await self._try_once(scope, body, receive, send, pass_busy=last_try):
                return
            await self.sleep(wait)
            attempt += 1

    async def _try_once(
        self, scope: Scope, body: bytes, receive: Receive, send: Send, *, pass_busy: bool
    ) -> bool:
        """One call of the app with the kept body (then the client's own messages, e.g. its
        disconnect); True when its answer went to the client (anything but a busy answer, or
        a busy one when ``pass_busy``)."""
        busy = False
        replay = body_first(body, receive)

        async def send_unless_busy(message: Message) -> None:
            nonlocal busy
            if message["type"] == "http.response.start" and message["status"] == 503:
                busy = True
            if not busy or pass_busy:
                await send(message)

        try:
            await self.app(scope, replay, send_unless_busy)
        except Exception:
            if not busy or pass_busy:
                raise
        return not busy or pass_busy


def body_first(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` for the app that gives ``body`` as the whole request, then the client's
    own messages (e.g. its disconnect): a request read once, passed on (again)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def whole_body(receive: Receive) -> bytes:
    """The request's body, read to its end."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)
