"""Evaluate one image of an evaluation set with one model through the production stages.

The image goes through the shoot's own ingest, cutout, score and route stages (`tasks.stages`),
so the mask compared with the ground truth is the saved, full-resolution 8-bit mask a shoot
ships (refined where the rules say so) and the confidence is the score a shoot would route on.
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from cutline.base import storage
from cutline.base.errors import CutlineError
from cutline.base.naming import safe_component
from cutline.base.settings import CutlineSettings, get_settings
from cutline.domain.items import ImageItem
from cutline.domain.manifest import clean_category
from cutline.domain.run_config import RunConfig
from cutline.evaluation.eval_metrics import matte_metrics
from cutline.evaluation.eval_set import EvalCase
from cutline.evaluation.evaluate import ImageEval, overlay_png
from cutline.imaging.codec import decode_image, load_mask
from cutline.imaging.decontaminate import decontaminate, edge_colour_error
from cutline.imaging.refine import refine_alpha
from cutline.imaging.segmenter import get_session, second_view_alpha
from tasks.context import ShootContext
from tasks.stages import run_plain, stages_through

EVAL_STAGES = stages_through("route")
EVAL_JOB = "EVAL"


def eval_context(
    model: str, data: str, out_dir: str, settings: CutlineSettings, *, label: str = ""
) -> ShootContext:
    """The shoot context an evaluation runs the stages in: its work folder per model is under
    the report folder, so a rerun of the same evaluation reuses the cutouts.

    Without ``label`` every image is cut with ``model`` alone (the rules' per-category models
    and fallback are what such figures choose); with one, the rules' models apply as a shoot
    applies them and ``label`` names that mixture (its report and work folder)."""
    frozen = RunConfig.freeze(settings)
    rules = frozen.rules if label else {**frozen.rules, "models": None}
    config = frozen.model_copy(update={"model": model, "rules": rules})
    return ShootContext(
        job_id=EVAL_JOB,
        shoot=data,
        job_root=storage.join(out_dir, "work", safe_component(label or model)),
        output_root=out_dir,
        config=config,
    )


def _at(mask_uri: str, size: tuple[int, int]) -> np.ndarray:
    """A mask file as float alpha in [0, 1] at ``size``."""
    mask = load_mask(storage.read_bytes(mask_uri), mask_uri)
    return np.asarray(mask.resize(size, Image.Resampling.BILINEAR), np.float32) / 255.0


def evaluate_case(case: EvalCase, index: int, ctx: ShootContext, label: str = "") -> ImageEval:
    """Cut out, score and route the image exactly as a shoot does, then compare the saved
    mask with the ground truth at the model's input size. ``label`` names the rules' model
    mixture when the context applies it (see `eval_context`)."""
    settings = ctx.config
    item = ImageItem(
        index=index,
        source=case.image,
        source_name=case.name,
        image_id=f"{index:05d}-{safe_component(case.name)}",
        category=clean_category(case.category),
    )
    run_plain([item], ctx, EVAL_STAGES)
    if item.failed:
        raise CutlineError(f"Evaluation image {case.name} failed: {item.error}")
    small, _ = decode_image(
        storage.read_bytes(case.image),
        case.name,
        max_pixels=settings.max_pixels,
        max_side=settings.model_input_max_side,
    )
    pred, truth = _at(item.mask, small.size), _at(case.alpha, small.size)
    alternatives = {}
    if settings.confidence_second_view:
        session = get_session(
            item.model or ctx.model,  # the model that cut this image
            get_settings().resolved_model_home,  # this host's copy (name and md5 are the run's)
            settings.inference_threads(),
            settings.onnx_providers,
        )
        second = second_view_alpha(session, small)
        alternatives = {
            "second view": matte_metrics(second, truth),
            "mean of both views": matte_metrics((pred + second) / 2, truth),
        }
    started = time.perf_counter()
    refined = pred if item.refinement else refine_alpha(pred, np.asarray(small))
    refine_seconds = 0.0 if item.refinement else time.perf_counter() - started
    metrics = matte_metrics(pred, truth)
    overlay = storage.write_bytes(
        storage.join(
            ctx.output_root,
            "overlays",
            safe_component(label or ctx.model),
            f"{safe_component(case.name)}.png",
        ),
        overlay_png(small, pred, truth),
    )
    return ImageEval(
        name=case.name,
        category=case.category,
        subject=case.subject or case.name,
        model=label or ctx.model,
        cut_by=item.model or ctx.model,
        metrics=metrics,
        good=metrics.good,
        confidence=item.confidence if item.confidence is not None else 0.0,
        signals=item.signals,
        lane=item.lane.value if item.lane else "",
        rules=item.rules,
        inference_seconds=round(item.seconds.get("cutout", 0.0), 4),
        refinement=item.refinement,
        refined=matte_metrics(refined, truth),
        refine_seconds=round(refine_seconds, 4),
        alternatives=alternatives,
        edge_colour=_edge_colour(case, small, pred, truth),
        overlay=overlay,
    )


def _edge_colour(
    case: EvalCase, small: Image.Image, pred: np.ndarray, truth: np.ndarray
) -> dict[str, float]:
    """Colour error in the true soft edge (0-255, see `edge_colour_error`) of the photo's own
    colours and of the colours decontamination estimates with the shipped mask; empty where
    the set has no true foreground colours or the truth no soft edge."""
    if not case.foreground:
        return {}
    colours = Image.open(io.BytesIO(storage.read_bytes(case.foreground))).convert("RGB")
    colours = np.asarray(colours.resize(small.size, Image.Resampling.BILINEAR))
    alpha = np.clip(truth * 255 + 0.5, 0, 255).astype(np.uint8)
    shipped = Image.fromarray(np.clip(pred * 255 + 0.5, 0, 255).astype(np.uint8), mode="L")
    estimated = np.asarray(decontaminate(small.convert("RGB"), shipped))
    photo = edge_colour_error(np.asarray(small.convert("RGB")), colours, alpha)
    if photo is None:
        return {}
    return {
        "photo": round(photo, 2),
        "decontaminated": round(edge_colour_error(estimated, colours, alpha) or 0.0, 2),
    }
