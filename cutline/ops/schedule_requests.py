"""The embedded server saves a schedule's parameters hydrated (see
`cutline.services.schedule_parameters`): the UI's JSON overrides become the values they
stand for before Prefect stores them, so the very next planned run has them."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from cutline.ops.retry_after import body_first, whole_body
from cutline.services.schedule_parameters import hydrated, is_dehydrated

_SCHEDULES = re.compile(r"/deployments/[0-9a-fA-F-]{36}/schedules(/[0-9a-fA-F-]{36})?/?$")


def _hydrate_body(body: bytes) -> bytes:
    """The request body with each schedule's ``parameters`` hydrated; as it was when it is
    not JSON or holds nothing to hydrate (Prefect answers such a body itself)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body
    schedules = data if isinstance(data, list) else [data]
    changed = False
    for schedule in schedules:
        if isinstance(schedule, dict) and is_dehydrated(schedule.get("parameters")):
            fixed = hydrated(schedule["parameters"])
            changed = changed or fixed != schedule["parameters"]
            schedule["parameters"] = fixed
    return json.dumps(data).encode() if changed else body


class HydrateScheduleParameters:
    """ASGI middleware: POST and PATCH of a deployment's schedules reach Prefect with their
    parameters hydrated (the body is read whole; only those two requests)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in {"POST", "PATCH"}
            or not _SCHEDULES.search(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        body = _hydrate_body(await whole_body(receive))
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, body_first(body, receive), send)
