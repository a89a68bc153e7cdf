"""Batches stream through the stages: the first batch is through before the last one starts,
both worker slots stay busy, and stage-by-stage order is kept for comparison."""

from __future__ import annotations

import threading
import time

import pytest
from prefect import flow, task

from cutline.base.settings import BatchOrder
from flows.streaming import stream_batches
from tasks.context import BatchRef, ShootContext
from tests.contexts import shoot_context

pytestmark = pytest.mark.slow

EVENTS: list[tuple[str, int, str]] = []  # (what, batch, stage) in the order they happened
_LOCK = threading.Lock()


def _stage(name: str):
    @task(name=name)
    def work(batch: BatchRef, _: ShootContext) -> BatchRef:
        with _LOCK:
            EVENTS.append(("start", batch.index, name))
        time.sleep(0.05)  # some work, so two slots overlap
        with _LOCK:
            EVENTS.append(("end", batch.index, name))
        return batch

    return work


STAGES = [_stage(name) for name in ("ingest", "cutout", "register")]


@flow
def run(order: str, batches: int, ctx: ShootContext) -> list[int]:
    settled: list[int] = []
    refs = [BatchRef(index=i, uri=f"/nowhere/{i:05d}.json") for i in range(batches)]
    stream_batches(
        refs,
        STAGES,
        ctx,
        slots=2,
        on_settled=lambda index, problem: settled.append(index),
        order=BatchOrder(order),
    )
    return settled


@pytest.fixture
def ctx(tmp_path) -> ShootContext:
    EVENTS.clear()
    return shoot_context(tmp_path, "STREAM-1")


def _position(what: str, batch: int, stage: str) -> int:
    return EVENTS.index((what, batch, stage))


def test_streaming_lands_the_first_batch_before_the_last_one_starts(prefect_server, ctx):
    settled = run("streaming", 6, ctx)
    assert sorted(settled) == list(range(6))  # every batch settles exactly once
    assert len(EVENTS) == 6 * 3 * 2
    # The first batch is registered before the last batch is even ingested.
    assert _position("end", 0, "register") < _position("start", 5, "ingest")
    # At most two tasks at a time, and two most of the time.
    running, most = 0, 0
    for what, _, _ in EVENTS:
        running += 1 if what == "start" else -1
        most = max(most, running)
    assert most == 2


def test_stage_by_stage_runs_every_batch_through_a_stage_first(prefect_server, ctx):
    settled = run("stage-by-stage", 4, ctx)
    assert sorted(settled) == list(range(4))
    last_ingest = max(_position("start", b, "ingest") for b in range(4))
    first_cutout = min(_position("start", b, "cutout") for b in range(4))
    assert last_ingest < first_cutout
