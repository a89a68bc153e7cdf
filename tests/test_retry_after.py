"""The embedded server's busy answers tell the client to retry soon, and later the longer the
same request stays busy; a request answered otherwise starts over."""

from __future__ import annotations

import asyncio
import contextlib
import json

from cutline.ops.retry_after import (
    LONGEST_WAIT_SECONDS,
    PatientForBrowsers,
    QuickRetryAfter,
    retry_wait,
)


class FlakyApp:
    """An ASGI app answering 503 (or ``status``) to each request, after reading its body."""

    def __init__(self) -> None:
        self.status = 503
        self.headers: list[tuple[bytes, bytes]] = []
        self.raise_after_answer = False

    async def __call__(self, scope, receive, send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send(
            {"type": "http.response.start", "status": self.status, "headers": list(self.headers)}
        )
        await send({"type": "http.response.body", "body": b"{}"})
        if self.raise_after_answer:  # what Starlette's error middleware does after a 503
            raise RuntimeError("database is locked")


def exchange(
    app,
    path: str = "/api/flows/",
    body: dict | None = None,
    client: str = "127.0.0.1",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> list[dict]:
    """One POST through ``app`` (its body in two parts, as large bodies arrive); every message
    the client got."""
    whole = json.dumps(body or {"name": "flow"}).encode()
    chunks = [whole[:5], whole[5:]]
    sent: list[dict] = []

    async def receive() -> dict:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": headers or [],
        "client": (client, 40000 + len(path)),
    }
    with contextlib.suppress(RuntimeError):  # the apps' imitation of the server's exception
        asyncio.run(app(scope, receive, send))
    return sent


def call(
    app, path: str = "/api/flows/", body: dict | None = None, client: str = "127.0.0.1"
) -> tuple[int, dict[str, str]]:
    """One request through ``app``; its status and headers."""
    start = exchange(app, path, body, client)[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_a_request_that_stays_busy_is_told_to_wait_longer_each_time():
    app = QuickRetryAfter(FlakyApp())
    waits = [float(call(app)[1]["retry-after"]) for _ in range(7)]
    assert waits == [0.25, 0.75, 2.25, 6.75, 20.25, 30.0, 30.0]
    assert waits[-1] == LONGEST_WAIT_SECONDS
    # Prefect's client retries 5 times by default: about 30 s of patience in all, the first
    # retry after a quarter of a second instead of 2 s.
    assert 25 < sum(retry_wait(n) for n in range(5)) < 35


def test_each_request_has_its_own_count_and_an_answer_starts_it_over():
    inner = FlakyApp()
    app = QuickRetryAfter(inner)
    assert call(app, body={"name": "a"})[1]["retry-after"] == "0.25"
    assert call(app, body={"name": "a"})[1]["retry-after"] == "0.75"
    # Another body, path or client is another request.
    assert call(app, body={"name": "b"})[1]["retry-after"] == "0.25"
    assert call(app, path="/api/variables/", body={"name": "a"})[1]["retry-after"] == "0.25"
    assert call(app, body={"name": "a"}, client="10.0.0.7")[1]["retry-after"] == "0.25"
    # Once a request like it is answered, the next busy answer is a first one again.
    inner.status = 201
    status, headers = call(app, body={"name": "a"})
    assert status == 201 and "retry-after" not in headers
    inner.status = 503
    assert call(app, body={"name": "a"})[1]["retry-after"] == "0.25"


def test_busy_answers_followed_by_the_servers_exception_are_still_marked():
    inner = FlakyApp()
    inner.raise_after_answer = True
    app = QuickRetryAfter(inner)
    assert call(app)[1]["retry-after"] == "0.25"
    assert call(app)[1]["retry-after"] == "0.75"


def test_other_answers_and_a_servers_own_retry_after_are_left_alone():
    inner = FlakyApp()
    app = QuickRetryAfter(inner)
    for status in (200, 423, 429, 500):
        inner.status = status
        assert "retry-after" not in call(app)[1]
    inner.status = 503
    inner.headers = [(b"Retry-After", b"5"), (b"Prefect-Maintenance", b"true")]
    status, headers = call(app)
    assert status == 503 and headers["Retry-After"] == "5" and "retry-after" not in headers


def test_websockets_and_lifespan_pass_through_untouched():
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])
        await send({"type": "websocket.accept"})

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {}

    wrapped = QuickRetryAfter(app)
    for kind in ("websocket", "lifespan"):
        asyncio.run(wrapped({"type": kind}, receive, send))
    assert seen == ["websocket", "lifespan"] and sent == [{"type": "websocket.accept"}] * 2


def test_a_busy_answer_older_than_any_retry_is_forgotten():
    from cutline.ops.retry_after import REMEMBER_SECONDS

    now = [1000.0]
    app = QuickRetryAfter(FlakyApp(), clock=lambda: now[0])
    assert call(app)[1]["retry-after"] == "0.25"
    now[0] += REMEMBER_SECONDS - 1
    assert call(app)[1]["retry-after"] == "0.75"  # a retry, however late
    now[0] += REMEMBER_SECONDS + 1
    assert call(app)[1]["retry-after"] == "0.25"  # a new request that looks the same


class BusyThenAnswers:
    """An ASGI app busy (503, then the server's exception) ``busy`` times, then 200; it keeps
    every body it was sent."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        status = 503 if len(self.bodies) <= self.busy else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})
        if status == 503:
            raise RuntimeError("database is locked")


def _browser_call(app, user_agent: bytes = b"Mozilla/5.0 (X11; Linux x86_64) Chrome/120"):
    """One POST as the Prefect UI in a browser sends it; every message the client got."""
    return exchange(
        app,
        "/api/flow_runs/123/resume",
        {"run_input": {"decision": "approve"}},
        headers=[(b"user-agent", user_agent)],
    )


def _patient(app, patience: float = 60.0):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    clock = iter(range(0, 10_000)).__next__  # one second per look at the clock
    return PatientForBrowsers(app, patience=patience, clock=clock, sleep=sleep), slept


def test_a_browsers_request_is_retried_in_the_server_while_the_database_is_busy():
    app = BusyThenAnswers(busy=2)
    patient, slept = _patient(app)
    sent = _browser_call(patient)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200]
    assert sent[-1]["body"] == b'{"ok": true}'
    assert app.bodies == [b'{"run_input": {"decision": "approve"}}'] * 3  # the same request
    assert slept == [retry_wait(0), retry_wait(1)]


def test_prefects_own_client_gets_the_busy_answer_and_retries_itself():
    app = BusyThenAnswers(busy=1)
    patient, slept = _patient(app)
    sent = _browser_call(patient, user_agent=b"prefect/3.9.1 (API 0.8.4)")
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [503]
    assert len(app.bodies) == 1 and slept == []


def test_a_database_busy_past_the_servers_patience_is_answered_busy_with_a_retry_after():
    app = BusyThenAnswers(busy=1_000)
    patient, slept = _patient(QuickRetryAfter(app), patience=30)
    sent = _browser_call(patient)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [503]  # once: the retries were not sent on
    assert (b"retry-after", f"{retry_wait(len(slept)):.2f}".encode()) in starts[0]["headers"]
    assert 1 <= len(slept) < len(app.bodies) <= 10
