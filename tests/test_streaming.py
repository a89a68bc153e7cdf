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


def _stage(name: str, seconds: float):
    @task(name=name)
    def work(batch: BatchRef, _: ShootContext) -> BatchRef:
        with _LOCK:
            EVENTS.append(("start", batch.index, name))
        time.sleep(seconds)  # some work, so two slots overlap
        with _LOCK:
            EVENTS.append(("end", batch.index, name))
        return batch

    return work


# The model's stage is the slow one, as in a shoot.
STAGES = [_stage("ingest", 0.05), _stage("cutout", 0.25), _stage("register", 0.05)]


@flow
def run(order: str, batches: int, ctx: ShootContext, model_slots: int = 0) -> list[int]:
    settled: list[int] = []
    refs = [BatchRef(index=i, uri=f"/nowhere/{i:05d}.json") for i in range(batches)]
    stream_batches(
        refs,
        STAGES,
        ctx,
        slots=2,
        on_settled=lambda index, problem: settled.append(index),
        order=BatchOrder(order),
        model_stages={1} if model_slots else (),  # the cutout
        model_slots=model_slots,
    )
    return settled


def _most_at_once(stage: str | None = None) -> int:
    running, most = 0, 0
    for what, _, name in EVENTS:
        if stage is None or name == stage:
            running += 1 if what == "start" else -1
            most = max(most, running)
    return most


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
    assert _most_at_once() == 2  # at most two tasks at a time, and two at some time


def test_stage_by_stage_runs_every_batch_through_a_stage_first(prefect_server, ctx):
    settled = run("stage-by-stage", 4, ctx)
    assert sorted(settled) == list(range(4))
    last_ingest = max(_position("start", b, "ingest") for b in range(4))
    first_cutout = min(_position("start", b, "cutout") for b in range(4))
    assert last_ingest < first_cutout


def test_the_model_stage_has_slots_of_its_own_and_is_fed_without_running_ahead(prefect_server, ctx):
    settled = run("streaming", 8, ctx, model_slots=2)
    assert sorted(settled) == list(range(8))
    assert len(EVENTS) == 8 * 3 * 2
    assert _most_at_once("cutout") == 2  # the model's slots, used in full
    assert _most_at_once() > 2  # other stages ran beside the cutouts
    assert _most_at_once("ingest") + _most_at_once("register") <= 4
    for batch in range(8):  # each batch still goes through its stages in order
        assert _position("end", batch, "ingest") < _position("start", batch, "cutout")
        assert _position("end", batch, "cutout") < _position("start", batch, "register")
    # New batches are ingested only while fewer than two wait for the model: the shoot is
    # not read ahead of the cutouts (at most 2 cut out and 2 waiting; the ingests are five
    # times as fast, so without the bound every batch would be read at once).
    ingested, cut = set(), set()
    for what, batch, stage in EVENTS:
        if (what, stage) == ("start", "ingest"):
            ingested.add(batch)
        elif (what, stage) == ("end", "cutout"):
            cut.add(batch)
        assert len(ingested - cut) <= 4, EVENTS
