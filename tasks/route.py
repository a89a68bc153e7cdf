"""Routing: each scored image to the auto or review lane by the rules file."""

from __future__ import annotations

from cutline.domain.items import ImageItem
from rules.engine import RoutingInput, route
from tasks.context import PerImage, ShootContext, StageWork


def make_route(ctx: ShootContext) -> StageWork:
    """Per-image routing by the rules file, recording every rule that fired."""
    rules = ctx.rules

    def decide(item: ImageItem) -> None:
        decision = route(
            rules,
            RoutingInput(
                category=item.category, campaign=item.campaign, confidence=item.confidence or 0.0
            ),
        )
        item.lane = decision.lane
        item.rules = [hit.rule for hit in decision.hits]
        item.reasons = decision.reasons
        item.queue = decision.queue
        item.priority = decision.priority if decision.queue else None

    return PerImage(decide)
