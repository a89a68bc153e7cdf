"""The embedded Prefect server: Prefect's own app (API, UI, background services), as
`prefect server start` runs it in the foreground, with quick retry hints on busy answers.

    python -m cutline.ops.prefect_server --host 127.0.0.1 --port 4200

`cutline up` starts this instead of `prefect server start` so that a write meeting another
one in SQLite costs the client a fraction of a second, not Prefect's fixed 2, 4, 8 s
(see `cutline.ops.retry_after`). Everything else is Prefect's: settings come from the
environment (PREFECT_HOME, PREFECT_SERVER_*), as for `prefect server start`.

At start-up, before it answers any request, the server gives back the slots of Cutline's
concurrency limits (the model's, each job's) that no lease accounts for (`ReclaimUnleasedSlots`):
slots a crash left taken with no holder to give them back.
"""

from __future__ import annotations

import argparse
import logging

from cutline.ops.retry_after import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("cutline.prefect_server")

# Cutline's own limits: the model's and one per job. Prefect's (deployment:..., tag:...) are
# released by Prefect when their runs end, lease or not; reclaiming them here could free a
# slot twice.
CUTLINE_LIMIT_PREFIX = "cutline-"


async def reclaim_unleased_slots() -> dict[str, int]:
    """Give back the slots of Cutline's concurrency limits that no lease holds (a holder
    killed with an in-memory lease storage, or slots leaked before leases were kept on
    disk); return the slots given back per limit. Leases still on record, expired or not,
    count as held: Prefect's repossessor frees those itself. Rate limits (slot decay) have
    no leases and are left alone. Only with a lease storage of this one server (memory or its
    PREFECT_HOME): with a shared one (prefect-redis, several API servers) another server may be
    taking a slot at this moment."""
    from prefect.settings.context import get_current_settings

    from cutline.base import prefect_internals

    lease_storage = get_current_settings().server.concurrency.lease_storage
    if lease_storage not in prefect_internals.SINGLE_SERVER_LEASE_STORAGES:
        return {}
    # Leases first, limits second: a lease the repossessor revokes in between lowers the
    # limit's count too, so the difference can only come out too small, never too large.
    held = await prefect_internals.leased_slots_by_limit()
    reclaimed: dict[str, int] = {}
    async with prefect_internals.server_database_transaction() as session:
        for limit in await prefect_internals.read_concurrency_limits(session):
            if not limit.name.startswith(CUTLINE_LIMIT_PREFIX) or limit.slot_decay_per_second:
                continue
            unleased = int(limit.active_slots) - held.get(limit.id, 0)
            if unleased > 0:
                await prefect_internals.give_back_slots(session, limit.id, unleased)
                reclaimed[str(limit.name)] = unleased
    return reclaimed


RECLAIM_ATTEMPTS = 8


async def _reclaim_with_retries() -> None:
    """`reclaim_unleased_slots`, tried again while SQLite is busy: Prefect's own services
    write as the server starts, and one "database is locked" left a leaked slot taken."""
    import asyncio

    for attempt in range(RECLAIM_ATTEMPTS):
        try:
            reclaimed = await reclaim_unleased_slots()
        except Exception as exc:
            if "locked" in str(exc).lower() and attempt + 1 < RECLAIM_ATTEMPTS:
                await asyncio.sleep(0.25 * 2**attempt)  # 0.25 s ... 16 s in all ~32 s
                continue
            logger.exception("Could not check concurrency slots for lost leases")
            return
        for name, slots in sorted(reclaimed.items()):
            logger.warning(
                "Gave back %d slot(s) of concurrency limit %s: no lease held them (their "
                "holder stopped with the server)",
                slots,
                name,
            )
        return


class ReclaimUnleasedSlots:
    """ASGI middleware: once the app has started (database migrated), and before the server
    takes its first request, run `reclaim_unleased_slots` and log what it gave back. A
    failure is logged and the server starts anyway: the slots are then as they were."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_after_reclaiming(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await _reclaim_with_retries()
            await send(message)

        await self.app(scope, receive, send_after_reclaiming)


def main(argv: list[str] | None = None) -> None:
    """Serve Prefect's server app, wrapped in `QuickRetryAfter` (Prefect's clients retry a busy
    answer soon), `PatientForBrowsers` (the UI's buttons are retried here) and
    `HydrateScheduleParameters` (the UI's schedules keep usable parameters), until stopped."""
    import uvicorn
    from prefect.settings import (
        PREFECT_SERVER_API_KEEPALIVE_TIMEOUT,
        PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL,
        PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT,
        PREFECT_SERVER_LOGGING_LEVEL,
    )

    from cutline.base.prefect_internals import server_app
    from cutline.ops.retry_after import PatientForBrowsers, QuickRetryAfter
    from cutline.ops.schedule_requests import HydrateScheduleParameters

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(levelname)-7s | %(name)s - %(message)s")
    uvicorn.run(
        HydrateScheduleParameters(
            ReclaimUnleasedSlots(PatientForBrowsers(QuickRetryAfter(server_app())))
        ),
        host=args.host,
        port=args.port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        ws_ping_interval=PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.value(),
        ws_ping_timeout=PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.value(),
        log_level=PREFECT_SERVER_LOGGING_LEVEL.value().lower(),
    )


if __name__ == "__main__":
    main()
