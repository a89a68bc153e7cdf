"""Free loopback ports for the servers tests start. Import this, never tests.conftest: pytest
loads conftest itself, and importing it again would re-run its module code (new ports in the
environment) behind the session's servers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
