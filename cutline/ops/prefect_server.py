"""The embedded Prefect server: Prefect's own app (API, UI, background services), as
`prefect server start` runs it in the foreground, with quick retry hints on busy answers.

    python -m cutline.ops.prefect_server --host 127.0.0.1 --port 4200

`cutline up` starts this instead of `prefect server start` so that a write meeting another
one in SQLite costs the client a fraction of a second, not Prefect's fixed 2, 4, 8 s
(see `cutline.ops.retry_after`). Everything else is Prefect's: settings come from the
environment (PREFECT_HOME, PREFECT_SERVER_*), as for `prefect server start`.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    """Serve Prefect's server app, wrapped in `QuickRetryAfter`, until stopped."""
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_SERVER_API_KEEPALIVE_TIMEOUT,
        PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL,
        PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT,
        PREFECT_SERVER_LOGGING_LEVEL,
    )

    from cutline.ops.retry_after import QuickRetryAfter

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        QuickRetryAfter(create_app(final=True)),
        host=args.host,
        port=args.port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        ws_ping_interval=PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.value(),
        ws_ping_timeout=PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.value(),
        log_level=PREFECT_SERVER_LOGGING_LEVEL.value().lower(),
    )


if __name__ == "__main__":
    main()
