"""A batch whose task fails after its retries still accounts for every one of its images."""

from __future__ import annotations

import pytest
from prefect import flow, task, unmapped

from cutline.items import ImageItem
from cutline.ledger import reconcile
from flows.process_shoot import _batch_outcome, _batches

pytestmark = pytest.mark.slow


@task
def passes(items: list[ImageItem], tag: str) -> list[ImageItem]:
    for item in items:
        item.reasons = tag
        item.mask = f"/masks/{item.index}.png"  # work a later failure must not throw away
    return items


@task
def breaks_on_second_batch(items: list[ImageItem], _: str) -> list[ImageItem]:
    if any(item.index in (2, 3) for item in items):
        raise ConnectionError("object store unreachable")
    for item in items:
        item.lane = "auto"
    return items


@flow
def two_stage(items: list[ImageItem]) -> list[ImageItem]:
    batches = _batches(items, 2)
    first = passes.map(batches, unmapped("ok"))
    second = breaks_on_second_batch.map(first, unmapped("x"))
    out: list[ImageItem] = []
    for index, batch in enumerate(batches):
        out.extend(_batch_outcome([("passes", first[index]), ("breaks", second[index])], batch))
    return out


def test_failed_batch_images_land_in_failed_with_the_error(prefect_server):
    items = [
        ImageItem(index=i, source=f"/s/{i}.jpg", source_name=f"{i}.jpg", image_id=str(i))
        for i in range(5)
    ]
    out = two_stage(items)
    lanes = reconcile([i.source for i in items], out)
    assert lanes == {"auto": 3, "review": 0, "failed": 2}
    failed = [i for i in out if i.lane == "failed"]
    assert {i.index for i in failed} == {2, 3}
    assert all("object store unreachable" in i.error and "Rerun the job" in i.error for i in failed)
    assert all(i.error.startswith("batch: breaks failed") for i in failed)
    assert [i.mask for i in sorted(out, key=lambda i: i.index)] == [
        f"/masks/{n}.png" for n in range(5)
    ]
