"""Backpressure shared by every shoot and worker: Prefect global concurrency and rate limits."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from cutline.base.settings import CutlineSettings

MODEL_LIMIT = "cutline-model"
DAM_LIMIT = "cutline-dam-writes"
# A held model slot is renewed every three quarters of this; a worker killed mid-cutout
# (SIGKILL, OOM, power) frees its slot when the lease lapses and the server's repossessor
# next runs (every 15 s by default), not after Prefect's default 300 s.
MODEL_LEASE_SECONDS = 60.0  # the shortest lease the Prefect server accepts

_ensured: set[tuple[str, str]] = set()


def ensure_limits(settings: CutlineSettings) -> None:
    """Create or update the limits from settings on the current Prefect API (idempotent)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    key = (str(PREFECT_API_URL.value()), f"{settings.model_slots}/{settings.dam_writes_per_second}")
    if key in _ensured:
        return
    rate = settings.dam_writes_per_second
    with get_client(sync_client=True) as client:
        upsert_limit(client, MODEL_LIMIT, settings.model_slots)
        upsert_limit(client, DAM_LIMIT, max(1, round(rate)), slot_decay_per_second=rate)
    _ensured.add(key)


def upsert_limit(
    client: Any, name: str, limit: int, slot_decay_per_second: float | None = None
) -> None:
    """Create the global concurrency limit ``name`` or set its values. Prefect's upsert reads,
    then creates: two processes starting at the same moment (two runs of one job, two
    workers) both create, and the second is told the limit exists; it then sets the values."""
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.upsert_global_concurrency_limit_by_name(name, limit, slot_decay_per_second)
    except ObjectAlreadyExists:
        client.upsert_global_concurrency_limit_by_name(name, limit, slot_decay_per_second)


@contextlib.contextmanager
def model_slot() -> Iterator[None]:
    """Hold one model slot while a batch is cut out (waits when every slot is busy). The slot
    is leased for ``MODEL_LEASE_SECONDS`` and renewed while held, so a killed worker does not
    keep other shoots off the model for minutes. A renewal that fails (server briefly away)
    lets the batch finish rather than throw its cutouts away: the slot is memory headroom,
    not a correctness lock."""
    from prefect.concurrency.sync import concurrency

    with concurrency(
        MODEL_LIMIT,
        occupy=1,
        strict=True,
        lease_duration=MODEL_LEASE_SECONDS,
        raise_on_lease_renewal_failure=False,
    ):
        yield


def dam_write_slot() -> None:
    """Wait for the DAM rate limit before one write."""
    from prefect.concurrency.sync import rate_limit

    rate_limit(DAM_LIMIT, occupy=1, strict=True)


class DamWriteAllowance:
    """DAM writes taken from the shared rate limit a few at a time (one API call per
    ``chunk`` writes instead of one per write: under load each call could wait seconds for
    the server). A batch's unused writes lapse, so the DAM never sees more than its limit."""

    def __init__(self, writes_per_second: float, chunk: int = 4) -> None:
        self.chunk = max(1, min(chunk, round(writes_per_second)))
        self._left = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        """Wait until one more write is allowed."""
        from prefect.concurrency.sync import rate_limit

        with self._lock:
            if self._left == 0:
                rate_limit(DAM_LIMIT, occupy=self.chunk, strict=True)
                self._left = self.chunk
            self._left -= 1
