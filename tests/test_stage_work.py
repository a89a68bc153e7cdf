"""The stages do their work once: the cutout takes ingest's decode, the model's threads are
shared by the batches running it, and results stay what they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cutline.domain.run_config import RunConfig
from cutline.imaging import recent_decodes
from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from tasks.context import model_input_key
from tasks.ingest import plan_shoot
from tasks.stages import run_plain, stages_through
from tests.contexts import shoot_context


def _cut(tmp_path: Path, job: str, *, forget_decodes: bool, remove_sources: bool = False):
    """Ingest and cut out the sample shoot; optionally lose ingest's decodes (as when the
    cutout runs in another process) or the source files (after ingest)."""
    shoot = tmp_path / "shoot"
    ctx = shoot_context(tmp_path / job, job, shoot=shoot)
    items = plan_shoot.fn(ctx, str(shoot / "manifest.csv"), ctx.config.batch_size).items()
    run_plain(items, ctx, stages_through("ingest"))
    if forget_decodes:
        for item in items:
            recent_decodes.take(model_input_key(item, ctx))
    if remove_sources:
        moved = tmp_path / f"moved-{job}"
        shoot.rename(moved)
    try:
        run_plain(items, ctx, stages_through("cutout")[1:])
    finally:
        if remove_sources:
            moved.rename(shoot)
    return items


@pytest.mark.slow
def test_the_cutout_takes_ingests_decode_and_the_masks_do_not_change(model_home, tmp_path):
    write_sample_shoot(tmp_path / "shoot", DEFAULT_SAMPLES[:3], size=(640, 480))
    decoded_again = _cut(tmp_path, "AGAIN", forget_decodes=True)
    # The sources gone after ingest: the cutout still runs, on ingest's decode.
    taken = _cut(tmp_path, "TAKEN", forget_decodes=False, remove_sources=True)
    assert [i.error for i in taken] == [""] * 3
    for again, once in zip(decoded_again, taken, strict=True):
        assert Path(again.mask).read_bytes() == Path(once.mask).read_bytes()
        assert again.signals == once.signals
    ctx = shoot_context(tmp_path / "TAKEN", "TAKEN", shoot=tmp_path / "shoot")
    assert all(recent_decodes.take(model_input_key(i, ctx)) is None for i in taken)  # used up


def test_the_decode_store_is_bounded_and_hands_each_decode_out_once():
    from PIL import Image

    from cutline.imaging.codec import ImageInfo

    info = ImageInfo(1024, 1024, "RGB", "JPEG", False)
    big = Image.new("RGB", (1024, 1024))
    for n in range(100):  # 300 MB of decodes offered, never all kept
        recent_decodes.keep(("bounded", n), big, info)
    kept = [n for n in range(100) if recent_decodes.take(("bounded", n)) is not None]
    assert 0 < len(kept) < 100 and kept == list(range(100 - len(kept), 100))  # the newest
    assert recent_decodes.take(("bounded", 99)) is None  # once only


def test_model_threads_are_the_cores_shared_by_the_workers(override_settings):
    cores = len(os.sched_getaffinity(0))
    for workers in (1, 2, 64):
        config = RunConfig.freeze(override_settings(workers=str(workers), onnx_threads="0"))
        assert config.inference_threads() == max(1, cores // workers)
    config = RunConfig.freeze(override_settings(workers="2", onnx_threads="3"))
    assert config.inference_threads() == 3  # a studio's own setting wins


def test_a_small_shoot_is_cut_into_enough_batches_to_keep_every_worker_busy():
    from tasks.ingest import balanced_batch_size

    assert balanced_batch_size(40, 16, workers=2) == 10  # 4 batches, not 16 + 16 + 8
    assert balanced_batch_size(4, 16, workers=2) == 1  # four large images: one each
    assert balanced_batch_size(20_000, 16, workers=2) == 16  # a large shoot: the setting
    assert balanced_batch_size(0, 16, workers=2) == 1


def test_work_done_for_the_batch_at_once_is_counted_in_each_images_time():
    """A stage that prepares its batch at once (the review stage's one request for the
    batch's runs) is given only the images in play, and its time is shared among them in
    the records, so the stage's cost per image still counts all of its work."""
    import time

    from cutline.domain.items import ImageItem
    from tasks.context import StageWork, for_each_image

    class Batched(StageWork):
        def __init__(self) -> None:
            self.prepared: list[str] = []

        def prepare(self, items: list[ImageItem]) -> None:
            self.prepared = [item.sku for item in items]
            end = time.thread_time() + 0.2
            while time.thread_time() < end:  # CPU, as a request's client side is
                pass

        def __call__(self, item: ImageItem) -> None:
            pass

    items = [
        ImageItem(index=n, source=f"/s/{n}.jpg", source_name=f"{n}.jpg", image_id=str(n), sku=sku)
        for n, sku in enumerate(("A", "B", "C", "D"))
    ]
    items[1].fail("ingest", "damaged")
    work = Batched()
    for_each_image(items, "review", work)
    assert work.prepared == ["A", "C", "D"]
    for item in (items[0], items[2], items[3]):
        assert item.cpu_seconds["review"] >= 0.2 / 3 * 0.95
        assert item.seconds["review"] >= item.cpu_seconds["review"] * 0.95
    assert "review" not in items[1].cpu_seconds


def test_a_file_deleted_after_the_shoot_was_listed_fails_alone_saying_so(tmp_path):
    shoot = tmp_path / "shoot"
    write_sample_shoot(shoot, DEFAULT_SAMPLES[:2], size=(120, 90))
    ctx = shoot_context(tmp_path / "GONE-1", "GONE-1", shoot=shoot)
    items = plan_shoot.fn(ctx, str(shoot / "manifest.csv"), ctx.config.batch_size).items()
    os.remove(items[0].source)  # a producer tidying the folder while the run goes
    run_plain(items, ctx, stages_through("ingest"))
    assert items[0].failed and "is no longer in the shoot folder" in items[0].error
    assert "unexpected" not in items[0].error and not items[1].failed
