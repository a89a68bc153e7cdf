"""Cutout: the model's alpha for each image, saved at the source's full resolution."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cutline.base import storage
from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.domain.workstate import WorkState
from cutline.imaging import recent_decodes
from cutline.imaging.codec import decode_image, mask_to_png_bytes
from cutline.imaging.confidence import mask_agreement, outline_agreement
from cutline.imaging.refine import refine_alpha
from cutline.imaging.segmenter import get_session, predict_alpha, second_view_alpha
from tasks.context import ImageWork, ShootContext, cutout_key, model_input_key


def full_resolution_mask(alpha: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Upscale the model's soft alpha (float [0, 1]) to the source size as an 8-bit mask."""
    small = Image.fromarray(np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return small if small.size == size else small.resize(size, Image.Resampling.BILINEAR)


def make_cutout(ctx: ShootContext) -> ImageWork:
    """Per-image cutout with the process's model session: the mask at full resolution, saved."""
    settings = ctx.config
    state = WorkState(ctx.layout)
    rules = ctx.rules

    def cut(item: ImageItem) -> None:
        item.refinement = rules.refinement_for(item.category)
        item.model = rules.model_for(item.category, ctx.model)
        key = cutout_key(item, ctx)
        done = state.reusable(item, "cutout", key, lambda prior: [prior.mask])
        if done is not None:
            item.mask = done.mask
            _keep_agreement(item, done.signals.get(AGREEMENT), done.signals.get(OUTLINE_AGREEMENT))
            item.reused.append("cutout")
            return
        session = get_session(
            item.model,
            get_settings().resolved_model_home,  # this host's copy (name and md5 are the run's)
            settings.inference_threads(),
            settings.onnx_providers,
        )
        small, info = recent_decodes.take(model_input_key(item, ctx)) or decode_image(
            storage.read_bytes(item.source),
            item.source_name,
            max_pixels=settings.max_pixels,
            max_side=settings.model_input_max_side,
        )
        alpha = predict_alpha(session, small)
        if settings.confidence_second_view:
            second = second_view_alpha(session, small)
            _keep_agreement(
                item,
                round(mask_agreement(alpha, second), 4),
                round(outline_agreement(alpha, second), 4),
            )
        if item.refinement:
            alpha = refine_alpha(alpha, np.asarray(small), item.refinement)
        mask = full_resolution_mask(alpha, (info.width, info.height))
        target = ctx.layout.path("masks", item.image_id, ".png")
        item.mask = storage.write_bytes(
            target, mask_to_png_bytes(mask, settings.png_compress_level)
        )
        state.remember(item, "cutout", key)

    return cut


# Raw measurements of the two views, kept with the item's signals for the score stage.
AGREEMENT = "view_agreement_iou"  # IoU of the whole masks
OUTLINE_AGREEMENT = "edge_agreement_iou"  # IoU within the band around the outlines


def _keep_agreement(item: ImageItem, agreement: float | None, outline: float | None) -> None:
    """Record the two views' IoUs for the score stage (and the ledger)."""
    measured = {AGREEMENT: agreement, OUTLINE_AGREEMENT: outline}
    item.signals = {**item.signals, **{k: v for k, v in measured.items() if v is not None}}
