"""A batch whose task fails after its retries still accounts for every one of its images,
and keeps what the stages before the failure produced."""

from __future__ import annotations

import pytest
from prefect import flow, task, unmapped

from cutline.items import ImageItem
from cutline.ledger import reconcile
from flows.outcomes import settle_batch
from flows.process_shoot import _batches, _stage_problem
from tasks.context import BatchRef, ShootContext, run_stage, save_batch

pytestmark = pytest.mark.slow


def _mark_mask(item: ImageItem) -> None:
    item.reasons = "ok"
    item.mask = f"/masks/{item.index}.png"  # work a later failure must not throw away


def _auto_unless_unreachable(item: ImageItem) -> None:
    if item.index in (2, 3):
        raise ConnectionError("object store unreachable")  # transient: fails the whole batch
    item.lane = "auto"


@task
def passes(batch: BatchRef, _: str) -> BatchRef:
    return run_stage(batch, "passes", _mark_mask)


@task
def breaks_on_second_batch(batch: BatchRef, _: str) -> BatchRef:
    return run_stage(batch, "breaks", _auto_unless_unreachable)


@flow
def two_stage(items: list[ImageItem], ctx: ShootContext) -> list[ImageItem]:
    batches = _batches(items, 2)
    refs = [save_batch(ctx, i, batch) for i, batch in enumerate(batches)]
    first = passes.map(refs, unmapped("ok"))
    second = breaks_on_second_batch.map(first, unmapped("x"))
    out: list[ImageItem] = []
    for index, ref in enumerate(refs):
        problem = _stage_problem([("passes", first[index]), ("breaks", second[index])])
        out.extend(settle_batch(ref, batches[index], problem).items)
    return out


def test_failed_batch_images_land_in_failed_with_the_error(prefect_server, tmp_path):
    ctx = ShootContext(
        job_id="FAIL-1",
        shoot=str(tmp_path),
        job_root=str(tmp_path / "job"),
        model="u2netp",
        rules_file="r",
        presets_file="p",
    )
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
