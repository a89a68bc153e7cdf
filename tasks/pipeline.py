"""The per-image stage chain as plain functions, for runners other than the mapped flow:
a batch flow on a work-pool worker, and the benchmark's plain loop."""

from __future__ import annotations

from collections.abc import Iterable

from cutline.items import ImageItem
from cutline.limits import model_slot
from tasks.context import ImageWork, ShootContext, for_each_image
from tasks.cutout import make_cutout
from tasks.export import EXPORT_LANES, make_export
from tasks.ingest import make_ingest
from tasks.register import REGISTER_LANES, make_register
from tasks.route import make_route
from tasks.score import make_score


def stage_chain(ctx: ShootContext) -> list[tuple[str, ImageWork, frozenset | None]]:
    """(stage name, per-image work, lanes it applies to) in pipeline order."""
    return [
        ("ingest", make_ingest(ctx), None),
        ("cutout", make_cutout(ctx), None),
        ("score", make_score(ctx), None),
        ("route", make_route(ctx), None),
        ("export", make_export(ctx), EXPORT_LANES),
        ("register", make_register(ctx), REGISTER_LANES),
    ]


def run_stages(
    items: Iterable[ImageItem], ctx: ShootContext, *, per_image: bool = False
) -> list[ImageItem]:
    """Every stage over ``items``: stage by stage for the batch (the cutout stage holding a
    model slot), or image by image when ``per_image`` (the benchmark's plain loop)."""
    chain = stage_chain(ctx)
    items = list(items)
    if per_image:
        for item in items:
            for name, work, lanes in chain:
                for_each_image([item], name, work, lanes=lanes)
        return items
    for name, work, lanes in chain:
        if name == "cutout":
            with model_slot():
                for_each_image(items, name, work, lanes=lanes)
        else:
            for_each_image(items, name, work, lanes=lanes)
    return items
