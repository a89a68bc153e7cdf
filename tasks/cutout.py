"""Cutout: the model's alpha for each image, saved at the source's full resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cutline.base import storage
from cutline.domain.items import ImageItem
from cutline.domain.workstate import WorkState
from cutline.imaging.codec import decode_image, mask_to_png_bytes
from cutline.imaging.confidence import mask_agreement
from cutline.imaging.refine import refine_alpha
from cutline.imaging.segmenter import get_session, predict_alpha, second_view_alpha
from rules.engine import load_rules
from tasks.context import ImageWork, ShootContext, cutout_key


def full_resolution_mask(alpha: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Upscale the model's soft alpha (float [0, 1]) to the source size as an 8-bit mask."""
    small = Image.fromarray(np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return small if small.size == size else small.resize(size, Image.Resampling.BILINEAR)


def make_cutout(ctx: ShootContext) -> ImageWork:
    """Per-image cutout with the process's model session: the mask at full resolution, saved."""
    settings = ctx.config
    state = WorkState(ctx.layout)
    rules = load_rules(ctx.rules_file)

    def cut(item: ImageItem) -> None:
        item.refinement = rules.refinement_for(item.category)
        key = cutout_key(item, ctx)
        done = state.reusable(item, "cutout", key, lambda prior: [prior.mask])
        if done is not None:
            item.mask = done.mask
            _keep_agreement(item, done.signals.get(AGREEMENT))
            item.reused.append("cutout")
            return
        session = get_session(
            ctx.model, Path(settings.model_home), settings.onnx_threads, settings.onnx_providers
        )
        data = storage.read_bytes(item.source)
        small, info = decode_image(
            data,
            item.source_name,
            max_pixels=settings.max_pixels,
            max_side=settings.model_input_max_side,
        )
        alpha = predict_alpha(session, small)
        if settings.confidence_second_view:
            agreement = mask_agreement(alpha, second_view_alpha(session, small))
            _keep_agreement(item, round(agreement, 4))
        if item.refinement:
            alpha = refine_alpha(alpha, np.asarray(small), item.refinement)
        mask = full_resolution_mask(alpha, (info.width, info.height))
        target = ctx.layout.path("masks", item.image_id, ".png")
        item.mask = storage.write_bytes(
            target, mask_to_png_bytes(mask, settings.png_compress_level)
        )
        state.remember(item, "cutout", key)

    return cut


AGREEMENT = "view_agreement_iou"  # raw IoU of the two views, kept with the item's signals


def _keep_agreement(item: ImageItem, agreement: float | None) -> None:
    """Record the two views' IoU for the score stage (and the ledger)."""
    if agreement is not None:
        item.signals = {**item.signals, AGREEMENT: agreement}
