"""A batch whose task fails after its retries still accounts for every one of its images,
and keeps what the stages before the failure produced."""

from __future__ import annotations

import pytest
from prefect import flow, task

from cutline.domain.items import ImageItem
from cutline.records.tally import ShootTally, reconcile
from flows.outcomes import settle_batch
from flows.streaming import stream_batches
from tasks.context import BatchRef, PlannedImage, ShootContext, run_stage, save_batch
from tests.contexts import shoot_context

pytestmark = pytest.mark.slow


def _mark_mask(item: ImageItem) -> None:
    item.reasons = "ok"
    item.mask = f"/masks/{item.index}.png"  # work a later failure must not throw away


def _auto_unless_unreachable(item: ImageItem) -> None:
    if item.index in (2, 3):
        raise ConnectionError("object store unreachable")  # transient: fails the whole batch
    item.lane = "auto"


@task(name="passes")
def passes(batch: BatchRef, _: ShootContext) -> BatchRef:
    return run_stage(batch, "passes", _mark_mask)


@task(name="breaks")
def breaks(batch: BatchRef, _: ShootContext) -> BatchRef:
    return run_stage(batch, "breaks", _auto_unless_unreachable)


@flow
def two_stage(items: list[ImageItem], ctx: ShootContext) -> list[ImageItem]:
    """The shoot's own streaming runner over two stages, the second failing for batch 1."""
    batches = [items[i : i + 2] for i in range(0, len(items), 2)]
    refs = [save_batch(ctx, i, batch) for i, batch in enumerate(batches)]
    with ShootTally() as tally:

        def settle(index: int, problem: str | None) -> None:
            planned = [PlannedImage.of(item) for item in batches[index]]
            settle_batch(refs[index], planned, problem, tally)

        stream_batches(refs, [passes, breaks], ctx, slots=2, on_settled=settle)
        return [ImageItem.model_validate(_typed(row)) for row in tally.ledger_rows()]


def _typed(row: dict[str, str]) -> dict:
    """A ledger row as ImageItem fields (the few this test looks at)."""
    return {
        "index": int(row["image_id"]),
        "source": row["source"],
        "source_name": row["source_name"],
        "image_id": row["image_id"],
        "lane": row["lane"],
        "error": row["error"],
        "mask": row["mask"],
    }


def test_failed_batch_images_land_in_failed_with_the_error(prefect_server, tmp_path):
    ctx = shoot_context(tmp_path, "FAIL-1")
    items = [
        ImageItem(index=i, source=f"/s/{i}.jpg", source_name=f"{i}.jpg", image_id=str(i))
        for i in range(5)
    ]
    out = two_stage(items, ctx)
    lanes = reconcile([i.source for i in items], out)
    assert lanes == {"auto": 3, "review": 0, "failed": 2}
    failed = [i for i in out if i.lane == "failed"]
    assert {i.index for i in failed} == {2, 3}
    assert all("object store unreachable" in i.error and "Rerun the job" in i.error for i in failed)
    assert all(i.error.startswith("batch: breaks failed") for i in failed)
    assert [i.mask for i in sorted(out, key=lambda i: i.index)] == [
        f"/masks/{n}.png" for n in range(5)
    ]


def test_a_batch_whose_records_cannot_be_read_is_accounted_for_from_the_plan(tmp_path):
    planned = [
        PlannedImage(i, f"/s/{i}.jpg", f"{i}.jpg", str(i), f"SKU-{i}", "homeware") for i in range(3)
    ]
    gone = BatchRef(index=0, uri=str(tmp_path / "vanished" / "00000.json"))
    with ShootTally() as tally:
        outcome = settle_batch(gone, planned, None, tally)
        assert tally.check([p.source for p in planned]) == {"auto": 0, "review": 0, "failed": 3}
        rows = list(tally.ledger_rows())
    assert outcome.unfinished == 3 and "could not be read back" in outcome.problem
    assert [r["sku"] for r in rows] == ["SKU-0", "SKU-1", "SKU-2"]
    assert all("not finished" in r["error"] and r["lane"] == "failed" for r in rows)
