"""Evaluate one image of an evaluation set with one model: the pipeline's own decode,
inference, confidence score and routing, compared with the ground truth (and the same after
the optional edge refinement, so its effect and cost are measured, not guessed)."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from cutline import storage
from cutline.confidence import mask_agreement, score_mask
from cutline.eval_metrics import MatteMetrics, matte_metrics
from cutline.eval_set import EvalCase
from cutline.imaging import decode_image, load_mask, mask_to_png_bytes
from cutline.naming import safe_component
from cutline.refine import refine_alpha
from cutline.segmenter import get_session, predict_alpha, second_view_alpha
from cutline.settings import get_settings
from rules.engine import RoutingInput, load_rules, route

OVERLAY_SIDE = 480


class ImageEval(BaseModel):
    """One image's figures for one model."""

    name: str
    category: str
    model: str
    metrics: MatteMetrics
    good: bool = Field(description="IoU >= 0.90.")
    confidence: float
    signals: dict[str, float]
    lane: str = Field(description="The lane the rules would choose for this image.")
    rules: list[str]
    inference_seconds: float = Field(description="Model time, both views.")
    refined: MatteMetrics = Field(description="The same figures after edge refinement.")
    refine_seconds: float = Field(description="Time of the edge refinement.")
    overlay: str = Field(description="PNG: missed subject in blue, extra background in red.")


def overlay_png(rgb: Image.Image, pred: np.ndarray, truth: np.ndarray) -> bytes:
    """The image with the cutout's mistakes painted on: blue where subject was missed, red
    where background was kept."""
    small = rgb.copy()
    small.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))
    size = small.size

    def resized(alpha: np.ndarray) -> np.ndarray:
        img = Image.fromarray((alpha * 255).astype(np.uint8), mode="L").resize(size)
        return np.asarray(img) >= 128

    p, t = resized(pred), resized(truth)
    out = np.asarray(small, dtype=np.float32).copy()
    for wrong, colour in ((t & ~p, (40, 90, 255)), (p & ~t, (255, 40, 40))):
        out[wrong] = 0.45 * out[wrong] + 0.55 * np.array(colour, dtype=np.float32)
    return mask_to_png_bytes(Image.fromarray(out.astype(np.uint8)), 1)


def evaluate_case(case: EvalCase, model: str, out_dir: str, rules_file: str) -> ImageEval:
    """Cut the image out as the pipeline would (same decode size, both views), score and
    route it, and compare the mask with the ground truth at the inference size."""
    settings = get_settings()
    session = get_session(model, settings.resolved_model_home, settings.onnx_threads)
    small, _ = decode_image(
        storage.read_bytes(case.image),
        case.name,
        max_pixels=settings.max_pixels,
        max_side=settings.model_input_max_side,
    )
    started = time.perf_counter()
    alpha = predict_alpha(session, small)
    agreement = None
    if settings.confidence_second_view:
        agreement = mask_agreement(alpha, second_view_alpha(session, small))
    inference = time.perf_counter() - started
    truth_img = load_mask(storage.read_bytes(case.alpha), case.alpha)
    truth = np.asarray(truth_img.resize(small.size, Image.Resampling.BILINEAR), np.float32) / 255
    metrics = matte_metrics(alpha, truth)
    started = time.perf_counter()
    refined = refine_alpha(alpha, np.asarray(small))
    refine_seconds = time.perf_counter() - started
    confidence = score_mask(alpha, np.asarray(small), agreement)
    decision = route(
        load_rules(rules_file),
        RoutingInput(category=case.category, confidence=confidence.score),
    )
    overlay = storage.write_bytes(
        storage.join(
            out_dir, "overlays", safe_component(model), f"{safe_component(case.name)}.png"
        ),
        overlay_png(small, alpha, truth),
    )
    return ImageEval(
        name=case.name,
        category=case.category,
        model=model,
        metrics=metrics,
        good=metrics.good,
        confidence=confidence.score,
        signals=confidence.signals,
        lane=decision.lane.value,
        rules=[hit.rule for hit in decision.hits],
        inference_seconds=round(inference, 4),
        refined=matte_metrics(refined, truth),
        refine_seconds=round(refine_seconds, 4),
        overlay=overlay,
    )
