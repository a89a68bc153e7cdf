"""Ingest: list the shoot, attach manifest data, and check each file decodes."""

from __future__ import annotations

import hashlib
import math
import unicodedata

from prefect import task
from pydantic import BaseModel, Field

from cutline.base import storage
from cutline.base.errors import ImageInputError
from cutline.base.naming import image_ids
from cutline.domain.items import ImageItem
from cutline.domain.locations import check_location
from cutline.domain.manifest import (
    Manifest,
    ShootNames,
    deadline_text,
    derive_sku,
    manifest_row_item,
    parse_manifest,
)
from cutline.domain.workstate import WorkState
from cutline.imaging import recent_decodes
from cutline.imaging.codec import decode_image
from tasks.context import (
    BatchRef,
    PerImage,
    PlannedImage,
    ShootContext,
    StageWork,
    load_batch,
    model_input_key,
    save_batch,
)


class ShootPlan(BaseModel):
    """The shoot's inputs, already written as batch records in the job folder, plus what
    was left out and why. Only handles and a few fields per image stay in memory."""

    refs: list[BatchRef]
    planned: list[list[PlannedImage]]
    ignored: list[str]
    manifest_rows_without_files: list[str]
    batch_size: int = Field(description="Images per batch this shoot was planned with.")

    @property
    def inputs(self) -> list[str]:
        """Every input file in shoot order, then every manifest row that names no file."""
        return [p.source for batch in self.planned for p in batch]

    def items(self) -> list[ImageItem]:
        """Every image's record as planned (reads the batch files; for small shoots)."""
        return [item for ref in self.refs for item in load_batch(ref)]


# Two batches per worker: while one is cut out the other is scored and exported (four cost
# 0.13 CPU s more per extra task run on the server, for no gain: issue 17).
BATCHES_PER_WORKER = 2


def balanced_batch_size(images: int, largest: int, workers: int) -> int:
    """Images per batch: ``largest`` (the setting) for a large shoot, fewer for a small one,
    so that each of the ``workers`` model slots gets at least two batches: one is cut out
    while the previous one is exported, and none waits idle at the end (40 images in
    batches of 16 on two workers ran the last batch alone, on one core, for a third of the
    shoot)."""
    return max(1, min(largest, math.ceil(images / (workers * BATCHES_PER_WORKER))))


# Manifest rows that name no file need no work (they are failed when planned), so they share
# batches of their own, however small the shoot's image batches are: 2 images and 300 such rows
# were 302 batches (2,115 task runs, 226 s); now they are 3.
ROWS_WITHOUT_FILES_PER_BATCH = 1000


@task(
    name="plan-shoot",
    retries=2,
    retry_delay_seconds=[2, 10],
    cache_result_in_memory=False,
)
def plan_shoot(ctx: ShootContext, manifest_uri: str | None, batch_size: int) -> ShootPlan:
    """List every input file of the shoot, give each its manifest data (or derived SKU), and
    write them as batches of at most ``batch_size`` records (see `balanced_batch_size`), so a
    20,000-image shoot is never held in memory whole."""
    settings = ctx.config
    inputs, ignored = storage.list_shoot_files(ctx.shoot)
    batch_size = balanced_batch_size(len(inputs), batch_size, settings.workers)
    if manifest_uri:
        manifest = parse_manifest(
            storage.read_bytes(manifest_uri), manifest_uri, settings.manifest_date_order
        )
        ignored = [u for u in ignored if u != storage.locate(manifest_uri).uri()]
    else:
        manifest = Manifest(rows={})
    presets = ctx.presets
    names = [storage.relative_name(ctx.shoot, uri) for uri in inputs]
    ids = image_ids(names)
    shoot_names = ShootNames(names)
    used_rows: set[str] = set()
    refs: list[BatchRef] = []
    planned: list[list[PlannedImage]] = []
    items: list[ImageItem] = []

    def flush() -> None:
        refs.append(save_batch(ctx, len(refs), items))
        planned.append([PlannedImage.of(item) for item in items])
        items.clear()

    for index, (uri, name) in enumerate(zip(inputs, names, strict=True)):
        row = manifest.lookup(name, shoot_names)
        item = ImageItem(index=index, source=uri, source_name=name, image_id=ids[name])
        unclear = manifest.ambiguous(name, shoot_names)
        if unclear is not None:
            unclear_row, matches = unclear
            used_rows.add(unclear_row.filename)
            item.fail(
                "manifest",
                f"manifest line {unclear_row.line} names '{unclear_row.filename}', which matches "
                f"{matches} files of the shoot (in sub-folders, or names that differ only in how "
                "their accents are encoded), so its category and SKU cannot be given to any of "
                f"them. Give each file a distinct name or write its path in the shoot (e.g. "
                f"{name}) in the filename column, and rerun the job.",
            )
        if row is not None:
            used_rows.add(row.filename)
            item.sku = row.sku
            item.category = row.category
            item.campaign = row.campaign
            item.deadline = deadline_text(row)
            item.brief = row.brief
            item.reference = row.reference
            item.manifest_line = row.line
            item.channels = list(row.channels)
            if row.problems:
                item.fail("manifest", "; ".join(row.problems))
        if not item.sku:
            item.sku = derive_sku(name, settings.sku_pattern)
        if not item.failed:
            try:
                item.channels = presets.resolve(item.channels)
            except KeyError as exc:
                item.fail(
                    "manifest", f"{exc.args[0]}. Fix the channels column or the presets file."
                )
        items.append(item)
        if len(items) == batch_size:
            flush()
    if items:
        flush()
    unused = sorted(set(manifest.rows) - used_rows)
    for offset, filename in enumerate(unused):  # a row of their own in the ledger, failed
        items.append(
            manifest_row_item(manifest.rows[filename], manifest_uri or "", len(inputs) + offset)
        )
        if len(items) == ROWS_WITHOUT_FILES_PER_BATCH:
            flush()
    if items:
        flush()
    return ShootPlan(
        refs=refs,
        planned=planned,
        ignored=ignored,
        manifest_rows_without_files=unused,
        batch_size=batch_size,
    )


def make_ingest(ctx: ShootContext) -> StageWork:
    """Per-image ingest: read the file, record its SHA-256 and upright size, prove it decodes."""
    settings = ctx.config
    state = WorkState(ctx.layout)

    def ingest(item: ImageItem) -> None:
        # Never open what is not a regular file, nor a link that leaves the allowed folders
        # (the studio's policy in this process's settings, like its credentials).
        controls = [c for c in item.source_name if unicodedata.category(c) == "Cc"]
        if controls:
            raise ImageInputError(
                item.source_name,
                "its file name contains control characters "
                f"({', '.join(sorted({f'U+{ord(c):04X}' for c in controls}))}), which can "
                "steer a terminal or hide part of the name.",
                hint="Rename the file without them and rerun the job.",
            )
        storage.require_regular_file(item.source, item.source_name)
        check_location(item.source, f"input file {item.source_name!r} (after links)")
        try:
            data = storage.read_bytes(item.source)
        except FileNotFoundError:
            raise ImageInputError(
                item.source_name,
                "is no longer in the shoot folder: it was moved or deleted after the run "
                "listed the shoot.",
                hint="Put it back (or leave it out) and rerun the job.",
            ) from None
        item.sha256 = hashlib.sha256(data).hexdigest()
        done = state.reusable(item, "ingest", item.sha256)
        if done is not None and done.width:
            item.width, item.height = done.width, done.height  # decoded before: same bytes
            item.reused.append("ingest")
            return
        small, info = decode_image(
            data,
            item.source_name,
            max_pixels=settings.max_pixels,
            max_side=settings.model_input_max_side,
        )
        recent_decodes.keep(model_input_key(item, ctx), small, info)  # the cutout's input
        item.width, item.height = info.width, info.height
        state.remember(item, "ingest", item.sha256)

    return PerImage(ingest)
