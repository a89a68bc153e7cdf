"""The pipeline's stages, listed once.

Every runner is built from `STAGES`: the shoot's per-batch Prefect tasks (`stage_tasks`), the
batch flow a worker runs, the benchmarks' plain loop (`run_plain`), `cutline status` and the
tests. Adding a stage is one entry here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prefect import Task, task

from cutline.domain.items import ImageItem
from cutline.domain.run_config import RunConfig
from cutline.services.limits import model_slot
from rules.engine import Lane
from tasks.context import BatchRef, ShootContext, StageWork, for_each_image, run_stage
from tasks.cutout import make_cutout
from tasks.export import EXPORT_LANES, make_export
from tasks.ingest import make_ingest
from tasks.register import REGISTER_LANES, make_register
from tasks.review_request import REVIEW_LANES, make_review_request
from tasks.route import make_route
from tasks.score import make_score


def outage_retry_delays(config: RunConfig) -> list[float]:
    """Retry a batch whose storage or DAM was unreachable as long as the shoot's settings say
    (`stage_retry_delays`): how long an outage a shoot rides out before it stops."""
    return list(config.stage_retry_delays)


@dataclass(frozen=True)
class Stage:
    """One step every image goes through, in pipeline order."""

    name: str
    description: str
    make_work: Callable[[ShootContext], StageWork]  # its work over one batch
    lanes: frozenset[Lane] | None = None  # None: every image still in play
    holds_model_slot: bool = False  # waits for a `cutline-model` slot (the model's memory)
    retry_delays: Callable[[RunConfig], list[float]] = field(default=outage_retry_delays)
    in_plain_loop: bool = True  # part of the benchmarks' reference loop (no Prefect)

    @property
    def task_name(self) -> str:
        """The name of the stage's per-batch task run in the Prefect UI and `cutline status`."""
        return f"{self.name}-batch"


STAGES: tuple[Stage, ...] = (
    Stage(
        "ingest",
        "Read each file, record its SHA-256 and upright size, prove it decodes.",
        make_ingest,
    ),
    Stage(
        "cutout",
        "Run the background-removal model on each image and save its mask.",
        make_cutout,
        holds_model_slot=True,
    ),
    Stage("score", "Score each AI mask against its image: confidence and signals.", make_score),
    Stage("route", "Decide each image's lane and record every rule that fired.", make_route),
    Stage(
        "export",
        "Auto lane: every rendition; review lane: the PSD a retoucher starts from.",
        make_export,
        lanes=EXPORT_LANES,
    ),
    Stage("register", "Register each auto-lane asset in the DAM.", make_register, REGISTER_LANES),
    Stage(
        "review",
        "Open one review-cutout run per review-lane image, waiting for a retoucher.",
        make_review_request,
        REVIEW_LANES,
        in_plain_loop=False,  # the loop measures the AI lane's work; reviews wait for people
    ),
)

STAGE_TASK_NAMES: tuple[str, ...] = tuple(stage.task_name for stage in STAGES)
# Positions in STAGES of the stages that run the model (a core each while they run).
MODEL_STAGE_INDEXES: frozenset[int] = frozenset(
    index for index, stage in enumerate(STAGES) if stage.holds_model_slot
)


def _batch_work(stage: Stage) -> Callable[[BatchRef, ShootContext], BatchRef]:
    """The stage over one batch: read its records, work on each image, write them back."""

    def work(batch: BatchRef, ctx: ShootContext) -> BatchRef:
        if stage.holds_model_slot:
            with model_slot():
                return run_stage(batch, stage.name, stage.make_work(ctx), lanes=stage.lanes)
        return run_stage(batch, stage.name, stage.make_work(ctx), lanes=stage.lanes)

    # A name of its own per stage, so each is a task of its own to Prefect (its task key).
    work.__name__ = work.__qualname__ = stage.task_name.replace("-", "_")
    work.__doc__ = stage.description
    return work


@functools.cache
def _task(stage: Stage) -> Task:
    # No tags: Prefect acquires a tag-concurrency lease for every tagged task run before it
    # starts, one more API round trip that took up to 2.4 s per task under load (issue 17).
    # The model's own limit (`cutline-model`) is what bounds the heavy stage.
    return task(
        name=stage.task_name,
        description=stage.description,
        cache_result_in_memory=False,
    )(_batch_work(stage))


def stage_tasks(config: RunConfig, stages: Iterable[Stage] = STAGES) -> list[Task]:
    """The per-batch Prefect task of each stage, with the stage's retry policy: the same
    tasks whether the shoot runs its batches itself or a worker runs a batch flow."""
    tasks = []
    for stage in stages:
        delays = stage.retry_delays(config)
        tasks.append(
            _task(stage).with_options(retries=len(delays), retry_delay_seconds=delays or 0)
        )
    return tasks


PLAIN_LOOP_STAGES: tuple[Stage, ...] = tuple(stage for stage in STAGES if stage.in_plain_loop)


def stages_through(last: str) -> tuple[Stage, ...]:
    """The stages from the first up to and including the one named ``last``."""
    names = [stage.name for stage in STAGES]
    if last not in names:
        raise ValueError(f"no stage named {last!r}; the stages are {', '.join(names)}")
    return STAGES[: names.index(last) + 1]


def run_plain(
    items: Iterable[ImageItem], ctx: ShootContext, stages: Iterable[Stage] = PLAIN_LOOP_STAGES
) -> list[ImageItem]:
    """``stages`` image after image, without Prefect: the benchmarks' reference for what the
    orchestration costs, and `cutline eval`'s way to cut out and score exactly as a shoot."""
    items = list(items)
    chain = [(stage, stage.make_work(ctx)) for stage in stages]
    for item in items:
        for stage, work in chain:
            for_each_image([item], stage.name, work, lanes=stage.lanes)
    return items
