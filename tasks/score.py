"""Confidence: a score in [0, 1] per cutout with the signals behind it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cutline.base import storage
from cutline.domain.items import ImageItem
from cutline.domain.workstate import WorkState, stage_key
from cutline.imaging.codec import decode_image, load_mask
from cutline.imaging.confidence import CONFIDENCE_VERSION, SIGNAL_WEIGHTS, score_mask
from tasks.context import PerImage, ShootContext, StageWork, cutout_key
from tasks.cutout import AGREEMENT, CUTOUT_MEASUREMENTS, OUTLINE_AGREEMENT

_SCORE_SIDE = 512


def make_score(ctx: ShootContext) -> StageWork:
    """Per-image confidence: the AI mask scored against its image at a small working size."""
    settings = ctx.config
    state = WorkState(ctx.layout)

    def score(item: ImageItem) -> None:
        key = stage_key("score", cutout_key(item, ctx), CONFIDENCE_VERSION, SIGNAL_WEIGHTS)
        done = state.reusable(item, "score", key)
        if done is not None and done.confidence is not None:
            item.confidence, item.signals = done.confidence, done.signals
            item.reused.append("score")
            return
        small, _ = decode_image(
            storage.read_bytes(item.source),
            item.source_name,
            max_pixels=settings.max_pixels,
            max_side=_SCORE_SIDE,
        )
        mask = load_mask(storage.read_bytes(item.mask), item.mask).resize(
            small.size, Image.Resampling.BILINEAR
        )
        measured = {k: item.signals[k] for k in CUTOUT_MEASUREMENTS if k in item.signals}
        result = score_mask(
            np.asarray(mask, dtype=np.float32) / 255.0,
            np.asarray(small),
            measured.get(AGREEMENT),
            measured.get(OUTLINE_AGREEMENT),
        )
        item.confidence = result.score
        item.signals = {**measured, **result.signals}
        state.remember(item, "score", key)

    return PerImage(score)
