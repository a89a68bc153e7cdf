"""Cutout: the model's alpha for each image, saved at the source's full resolution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cutline.base import storage
from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.domain.workstate import WorkState
from cutline.imaging import recent_decodes
from cutline.imaging.codec import decode_image, mask_to_png_bytes
from cutline.imaging.confidence import (
    FALLBACK_MODEL_SCORE,
    FIRST_MODEL_SCORE,
    mask_agreement,
    outline_agreement,
    score_mask,
)
from cutline.imaging.refine import refine_alpha
from cutline.imaging.segmenter import get_session, predict_alpha, second_view_alpha
from tasks.context import PerImage, ShootContext, StageWork, cutout_key, model_input_key


def full_resolution_mask(alpha: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Upscale the model's soft alpha (float [0, 1]) to the source size as an 8-bit mask."""
    small = Image.fromarray(np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return small if small.size == size else small.resize(size, Image.Resampling.BILINEAR)


@dataclass(frozen=True)
class ModelCut:
    """One model's alpha of an image at the model's input size, with its views' agreements."""

    model: str
    alpha: np.ndarray
    agreement: float | None
    outline: float | None

    def score(self, small: Image.Image) -> float:
        """The confidence of this cutout (as the score stage computes it from the saved mask)."""
        rgb = np.asarray(small.convert("RGB"))
        return score_mask(self.alpha, rgb, self.agreement, self.outline).score


def make_cutout(ctx: ShootContext) -> StageWork:
    """Per-image cutout with the process's model session: the mask at full resolution, saved.

    Where the rules name a fallback model, a cutout whose confidence is under its ``below``
    is cut again with that model and the cutout with the higher confidence is kept (the
    ledger's ``model`` column names it; both scores stay in its signals)."""
    settings = ctx.config
    state = WorkState(ctx.layout)
    rules = ctx.rules

    def cut_with(model: str, small: Image.Image) -> ModelCut:
        session = get_session(
            model,
            get_settings().resolved_model_home,  # this host's copy (name and md5 are the run's)
            settings.inference_threads(),
            settings.onnx_providers,
        )
        alpha = predict_alpha(session, small)
        agreement = outline = None
        if settings.confidence_second_view:
            second = second_view_alpha(session, small)
            agreement = round(mask_agreement(alpha, second), 4)
            outline = round(outline_agreement(alpha, second), 4)
        return ModelCut(model, alpha, agreement, outline)

    def cut(item: ImageItem) -> None:
        item.refinement = rules.refinement_for(item.category)
        first_model = rules.model_for(item.category, ctx.model)
        fallback = rules.fallback_for(first_model)
        key = cutout_key(item, ctx)
        done = state.reusable(item, "cutout", key, lambda prior: [prior.mask])
        if done is not None:
            item.mask, item.model = done.mask, done.model or first_model
            kept = {k: done.signals[k] for k in CUTOUT_MEASUREMENTS if k in done.signals}
            item.signals = {**item.signals, **kept}
            item.reused.append("cutout")
            return
        small, info = recent_decodes.take(model_input_key(item, ctx)) or decode_image(
            storage.read_bytes(item.source),
            item.source_name,
            max_pixels=settings.max_pixels,
            max_side=settings.model_input_max_side,
        )
        chosen = cut_with(first_model, small)
        measured: dict[str, float | None] = {}
        first_score = chosen.score(small) if fallback is not None else 1.0
        if fallback is not None and first_score < fallback.below:
            other = cut_with(fallback.model, small)
            other_score = other.score(small)
            measured = {FIRST_MODEL_SCORE: first_score, FALLBACK_MODEL_SCORE: other_score}
            if other_score > first_score:
                chosen = other
        measured.update({AGREEMENT: chosen.agreement, OUTLINE_AGREEMENT: chosen.outline})
        item.model = chosen.model
        item.signals = {**item.signals, **{k: v for k, v in measured.items() if v is not None}}
        alpha = chosen.alpha
        if item.refinement:
            alpha = refine_alpha(alpha, np.asarray(small), item.refinement)
        mask = full_resolution_mask(alpha, (info.width, info.height))
        target = ctx.layout.path("masks", item.image_id, ".png")
        item.mask = storage.write_bytes(
            target, mask_to_png_bytes(mask, settings.png_compress_level)
        )
        state.remember(item, "cutout", key)

    return PerImage(cut)


# Raw measurements of the cutout, kept with the item's signals for the score stage and the
# ledger: the two views' IoUs and, where the fallback model ran, both models' confidence.
AGREEMENT = "view_agreement_iou"  # IoU of the whole masks
OUTLINE_AGREEMENT = "edge_agreement_iou"  # IoU within the band around the outlines
CUTOUT_MEASUREMENTS = (AGREEMENT, OUTLINE_AGREEMENT, FIRST_MODEL_SCORE, FALLBACK_MODEL_SCORE)
