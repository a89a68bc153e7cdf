"""What every stage task needs to know about the shoot it works on (small, serialisable)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import botocore.exceptions
import httpx
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field, model_validator

from cutline.base import storage
from cutline.base.errors import CutlineError, ImageInputError, ModelError, OutputStorageError
from cutline.domain.items import ImageItem, JobLayout
from cutline.domain.locations import check_location
from cutline.domain.run_config import RunConfig
from cutline.domain.workstate import stage_key
from rules.engine import RuleSet
from rules.presets import PresetBook

# Errors that mean "try the batch again later", not "this image is bad": the storage or
# the DAM could not be reached (botocore's own connection errors do not derive from
# the built-in ConnectionError).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    httpx.TransportError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)


class ShootContext(BaseModel):
    """Per-run facts passed to every task: the job, where outputs go, and the settings the
    shoot froze when it started (`config`), which every task reads instead of its own."""

    job_id: str
    shoot: str
    job_root: str
    output_root: str = Field(
        default="", description="Output root; empty means the job folder's parent."
    )
    config: RunConfig = Field(description="The shoot's settings, frozen when its run started.")

    @property
    def model(self) -> str:
        """The shoot's model."""
        return self.config.model

    @property
    def rules(self) -> RuleSet:
        """The shoot's routing rules, as frozen with its run (not a file on this host)."""
        return self.config.rule_set()

    @property
    def presets(self) -> PresetBook:
        """The shoot's channel presets, as frozen with its run."""
        return self.config.preset_book()

    @model_validator(mode="after")
    def _default_output_root(self) -> ShootContext:
        if not self.output_root:
            self.output_root = storage.parent(self.job_root)
        return self

    def check_locations(self) -> ShootContext:
        """Refuse a context (e.g. typed into a run's parameters in the UI) whose shoot or
        output folders break the studio's location rules; see `cutline.domain.locations`."""
        check_location(self.shoot, "shoot")
        check_location(self.output_root, "output root")
        check_location(self.job_root, "job folder")
        return self

    @property
    def layout(self) -> JobLayout:
        """The job's output layout."""
        return JobLayout(self.job_root)


class StageWork:
    """What a stage does to the images of one batch: ``prepare`` is given every image it
    will see first, for what is cheaper done for the batch at once (one request for the
    batch's review runs; nothing, by default), then each image is worked on by itself
    (``__call__``), which does whatever ``prepare`` left undone."""

    def prepare(self, items: list[ImageItem]) -> None:
        """Work done for ``items`` together before each is worked on (default: none)."""

    def __call__(self, item: ImageItem) -> None:
        raise NotImplementedError


class PerImage(StageWork):
    """A stage's work that is one function per image, with nothing to prepare."""

    def __init__(self, work: Callable[[ImageItem], None]) -> None:
        self.work = work

    def __call__(self, item: ImageItem) -> None:
        self.work(item)


ImageWork = StageWork | Callable[[ImageItem], None]  # a plain function: `PerImage` of it


class BatchRef(BaseModel):
    """A batch of a shoot by reference: its images' records live in <job>/batches/NNNNN.json,
    so tasks pass this small handle between stages instead of the records themselves."""

    index: int
    uri: str


@dataclass(frozen=True, slots=True)
class PlannedImage:
    """What the flow keeps of each planned image, to account for it if its batch's records
    cannot be read back (a few hundred bytes, not the whole record)."""

    index: int
    source: str
    source_name: str
    image_id: str
    sku: str
    category: str

    @classmethod
    def of(cls, item: ImageItem) -> PlannedImage:
        """The planned image of an item."""
        return cls(
            item.index, item.source, item.source_name, item.image_id, item.sku, item.category
        )

    def item(self) -> ImageItem:
        """A record of this image as planned."""
        return ImageItem(
            index=self.index,
            source=self.source,
            source_name=self.source_name,
            image_id=self.image_id,
            sku=self.sku,
            category=self.category,
        )


def batch_uri(ctx: ShootContext, index: int) -> str:
    """Where a batch's image records are kept."""
    return storage.join(ctx.job_root, "batches", f"{index:05d}.json")


def _write_batch(uri: str, index: int, items: list[ImageItem], extra: dict | None = None) -> str:
    payload = {"index": index, **(extra or {}), "items": [i.model_dump(mode="json") for i in items]}
    return storage.write_bytes(uri, json.dumps(payload).encode("utf-8"))


def save_batch(
    ctx: ShootContext, index: int, items: list[ImageItem], extra: dict | None = None
) -> BatchRef:
    """Write a batch's records and return its handle."""
    return BatchRef(index=index, uri=_write_batch(batch_uri(ctx, index), index, items, extra))


def load_batch(ref: BatchRef) -> list[ImageItem]:
    """Read a batch's records as the last completed stage left them."""
    payload = json.loads(storage.read_bytes(ref.uri))
    return [ImageItem.model_validate(item) for item in payload["items"]]


def run_stage(
    ref: BatchRef, stage: str, work: ImageWork, *, lanes: frozenset | None = None
) -> BatchRef:
    """One stage over a batch: read its records, work on each image, write them back."""
    _write_batch(ref.uri, ref.index, for_each_image(load_batch(ref), stage, work, lanes=lanes))
    return ref


def model_input_key(item: ImageItem, ctx: ShootContext) -> tuple:
    """What the model-size decode of an image depends on: its content and the decode's
    limits (ingest's decode is handed to the cutout under this key)."""
    return (item.sha256, ctx.config.max_pixels, ctx.config.model_input_max_side)


def cutout_key(item: ImageItem, ctx: ShootContext) -> str:
    """What shapes an image's AI mask (and its views' agreements): its content, the model the
    rules give its category, the fallback model and when it runs, the inference size and
    whether the second view runs (v3: the outline agreement is measured too)."""
    model = ctx.rules.model_for(item.category, ctx.model)
    fallback = ctx.rules.fallback_for(model)
    return stage_key(
        "cutout-v3",
        item.sha256,
        model,
        *((fallback.model, fallback.below) if fallback else ()),
        ctx.config.model_input_max_side,
        ctx.config.confidence_second_view,
        item.refinement,
    )


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run's logger inside a flow or task run, the 'cutline' logger outside."""
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow or task run (benchmarks, scripts)
        return logging.getLogger("cutline")


def for_each_image(
    items: list[ImageItem], stage: str, work: ImageWork, *, lanes=None
) -> list[ImageItem]:
    """Run ``work`` on each image still in play; a bad image fails alone, with its reason.

    ``lanes`` restricts the stage to images in those lanes. ``work`` is first prepared with
    every image it will see (see `StageWork`; a plain function has nothing to prepare), then
    given the images one by one. Transient infrastructure
    errors, a full or read-only output storage and model errors propagate so Prefect
    retries (or fails) the whole batch.
    """
    logger = run_logger()
    in_play = [i for i in items if not i.failed and (lanes is None or i.lane in lanes)]
    work = work if isinstance(work, StageWork) else PerImage(work)
    shared, shared_cpu = 0.0, 0.0  # the batch's own work, shared out among its images
    if in_play:
        started, cpu_started = time.perf_counter(), time.thread_time()
        work.prepare(in_play)
        shared = (time.perf_counter() - started) / len(in_play)
        shared_cpu = (time.thread_time() - cpu_started) / len(in_play)
    for item in in_play:
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            work(item)
        except (*TRANSIENT_ERRORS, ModelError, OutputStorageError):
            raise
        except ImageInputError as exc:
            item.fail(stage, f"{exc.problem} {exc.hint}".strip())
        except CutlineError as exc:
            item.fail(stage, str(exc))
        except Exception as exc:
            item.fail(
                stage,
                f"unexpected {type(exc).__name__}: {exc}. Rerun the job; if it happens again, "
                "report it with this file.",
            )
        finally:
            item.seconds[stage] = round(time.perf_counter() - started + shared, 4)
            item.cpu_seconds[stage] = round(time.thread_time() - cpu_started + shared_cpu, 4)
        if item.failed:
            logger.warning("%s failed at %s: %s", item.source_name, stage, item.error)
    return items
