"""A per-image confidence in [0, 1] that the AI mask is usable, with the signals behind it.

Each signal is in [0, 1] (1 = looks right) and is kept in the ledger so a retoucher can
see why an image was flagged. The score is a weighted geometric mean, so one bad signal
pulls the score down hard. The model is run a second time on a padded (rescaled) view of the
image: ``view_agreement`` compares the two masks whole (glass, plants, subjects the model
half-recognises), ``edge_agreement`` compares them along the outline only, where a soft edge
against a backdrop of similar tone goes wrong (hair, plush). On a plain studio backdrop,
``nothing_left_out`` looks for things outside the mask that touch it and are not backdrop
(a shirt the model left off a toy) and ``no_backdrop_kept`` for flat paper inside the mask
(the backdrop seen through a bag's handle). ``boundary_certainty`` measures how much of the
soft mask is undecided. Ramps, weights and the routing threshold were set on the tune part of the
calibration set (`cutline calibration-set`, `cutline eval`; docs/confidence.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

SIGNAL_WEIGHTS: dict[str, float] = {
    "view_agreement": 3.0,
    "edge_agreement": 3.0,
    "nothing_left_out": 3.0,
    "no_backdrop_kept": 3.0,
    "boundary_certainty": 1.5,
    "coherence": 1.0,
    "area_sanity": 1.0,
    "border_clearance": 0.5,
    "edge_contrast": 0.5,
}
_WORK_SIDE = 512
_BACKDROP_SIDE = 256
# Bump when signals or weights change: reruns then rescore instead of reusing scores.
CONFIDENCE_VERSION = "3"


# Kept beside the signals where a fallback model gave a second opinion on a doubtful cutout
# (rules `models.fallback`): the first model's confidence and the fallback model's.
FIRST_MODEL_SCORE = "first_model_score"
FALLBACK_MODEL_SCORE = "fallback_model_score"


class Confidence(BaseModel):
    """The score and the named signals that produced it."""

    score: float = Field(ge=0, le=1, description="Confidence that the AI mask is usable.")
    signals: dict[str, float] = Field(description="Each signal in [0, 1]; 1 = looks right.")

    def weakest(self) -> str:
        """The signal that pulled the score down most."""
        return weakest_signal(self.signals) or ""


def weakest_signal(signals: dict[str, float]) -> str | None:
    """The lowest of the score's signals (raw measurements kept beside them, such as the two
    views' IoUs, are not signals); None when there are none."""
    scored = {k: v for k, v in signals.items() if k in SIGNAL_WEIGHTS}
    return min(scored, key=scored.get) if scored else None


def mask_agreement(alpha: np.ndarray, other: np.ndarray) -> float:
    """IoU of two soft masks of the same image thresholded at 0.5 (1 when both are empty)."""
    a, b = alpha >= 0.5, other >= 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _downsample(arr: np.ndarray, side: int) -> np.ndarray:
    step = max(1, int(np.ceil(max(arr.shape[:2]) / side)))
    return arr[::step, ::step]


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at or below lo, 1 at or above hi, linear between."""
    if hi == lo:
        return float(x >= hi)
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def view_agreement(agreement: float) -> float:
    """The mask and the second view's mask agree (IoU >= 0.97 is full marks, <= 0.80 none)."""
    return _ramp(agreement, 0.80, 0.97)


def outline_agreement(alpha: np.ndarray, other: np.ndarray) -> float:
    """IoU of two masks of the same image within the band around their outlines (1% of the
    long side either way), at the scoring size: the whole-mask IoU of a large subject hides
    a wrong soft edge (hair, plush, fringes), this does not."""
    a = _downsample(alpha, _WORK_SIDE) >= 0.5
    b = _downsample(other, _WORK_SIDE) >= 0.5
    union = a | b
    if not union.any():
        return 1.0
    radius = max(2, round(0.01 * max(union.shape)))
    band = ndimage.binary_dilation(union, iterations=radius) & ~ndimage.binary_erosion(
        union, iterations=radius
    )
    return float((a & b & band).sum() / max(1, (union & band).sum()))


def edge_agreement(band_iou: float) -> float:
    """The two views agree along the outline (band IoU >= 0.95 full marks, <= 0.80 none)."""
    return _ramp(band_iou, 0.80, 0.95)


def boundary_certainty(alpha: np.ndarray, hard: np.ndarray) -> float:
    """Few undecided pixels (alpha between 0.05 and 0.95) for the subject's size."""
    undecided = float(((alpha > 0.05) & (alpha < 0.95)).sum())
    share = undecided / max(1.0, float(hard.sum()))
    return 1.0 - _ramp(share, 0.08, 0.40)


def area_sanity(hard: np.ndarray) -> float:
    """A product shot's subject covers a plausible share of the frame (not ~0, not ~all)."""
    frac = float(hard.mean())
    return min(_ramp(frac, 0.002, 0.02), 1.0 - _ramp(frac, 0.92, 0.99))


def coherence(hard: np.ndarray) -> float:
    """Share of the subject in its largest piece: many fragments suggest background speckle."""
    labels, count = ndimage.label(hard)
    if count == 0:
        return 0.0
    sizes = np.bincount(labels.ravel())[1:]
    return float(sizes.max() / sizes.sum())


def border_clearance(hard: np.ndarray) -> float:
    """Masks that run along much of the frame edge usually swallowed background."""
    edges = np.concatenate([hard[0, :], hard[-1, :], hard[:, 0], hard[:, -1]])
    return 1.0 - _ramp(float(edges.mean()), 0.25, 0.6)


def edge_contrast(rgb: np.ndarray, hard: np.ndarray) -> float:
    """Colour difference just inside vs just outside the outline (white-on-white is hard)."""
    radius = max(2, round(0.008 * float(np.hypot(*hard.shape))))
    inner = hard & ~ndimage.binary_erosion(hard, iterations=radius)
    outer = ndimage.binary_dilation(hard, iterations=radius) & ~hard
    if inner.sum() < 10 or outer.sum() < 10:
        return 0.0
    diff = np.abs(rgb[inner].mean(axis=0) - rgb[outer].mean(axis=0)).max()
    return _ramp(float(diff), 4.0, 40.0)


def _backdrop_model(
    img: np.ndarray, seed: np.ndarray, outside: np.ndarray, median: np.ndarray, spread: float
) -> np.ndarray:
    """A smooth backdrop (quadratic in x and y per channel) grown from the seed pixels over
    the outside pixels that fit it: the seamless paper behind a studio subject."""
    height, width = outside.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height, xx / width
    basis = np.stack([np.ones_like(xx), xx, yy, xx * yy, xx * xx, yy * yy], axis=-1)
    inliers = seed & (np.abs(img - median).max(axis=-1) < max(12.0, 3 * spread))
    model = np.broadcast_to(median, img.shape).astype(np.float32)
    for _ in range(3):
        if inliers.sum() < 30:
            break
        coef, *_ = np.linalg.lstsq(basis[inliers], img[inliers], rcond=None)
        model = (basis @ coef).astype(np.float32)
        inliers = (
            outside
            & ~_unlike_backdrop(img, model)
            & (np.abs(img - model).max(axis=-1) < max(14.0, 3 * spread))
        )
    return model


def _unlike_backdrop(img: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Pixels that are not the backdrop: much darker than a shadow makes it, brighter, or of
    another hue."""
    lum_img, lum_model = img.mean(axis=-1) + 1.0, model.mean(axis=-1) + 1.0
    ratio = lum_img / lum_model
    chroma = np.abs(img / lum_img[..., None] - model / lum_model[..., None]).max(axis=-1)
    return (ratio < 0.55) | (ratio > 1.2) | (chroma > 0.12)


@dataclass(frozen=True)
class BackdropCheck:
    """What a plain studio backdrop shows about the mask, each for the subject's size."""

    left_out: float  # not-backdrop outside the mask that touches it: a part the model missed
    kept: float  # flat backdrop inside the mask: paper the model kept (a handle's loop)


def backdrop_check(rgb: np.ndarray, alpha: np.ndarray) -> BackdropCheck | None:
    """On a studio backdrop, model the paper from the top of the frame and look for subject
    left outside the mask (a shirt the model left off a plush toy) and for paper kept inside
    it (the backdrop seen through a bag's handle). None when the top of the frame is not a
    plain backdrop (a street or a cluttered set), where neither can be told."""
    a = _downsample(alpha, _BACKDROP_SIDE).astype(np.float32)
    img = _downsample(rgb, _BACKDROP_SIDE).astype(np.float32)
    height, width = a.shape
    hard = a >= 0.5
    if not hard.any():
        return None
    margin = max(2, round(0.012 * float(np.hypot(height, width))))
    near = ndimage.binary_dilation(a > 0.05, iterations=margin)
    outside = ~near
    top = max(3, height // 12)
    seed = outside.copy()
    seed[top:] = False  # the top strip: backdrop in a studio shot
    if seed.sum() < 0.02 * top * width:
        return None
    median = np.median(img[seed], axis=0)
    spread = float(np.percentile(np.abs(img[seed] - median).max(axis=-1), 90))
    if spread >= 20.0:
        return None
    model = _backdrop_model(img, seed, outside, median, spread)
    unlike = _unlike_backdrop(img, model)
    odd = outside & unlike
    labels, _ = ndimage.label(odd)
    touching = np.unique(labels[ndimage.binary_dilation(near, iterations=2) & odd])
    left_out = np.isin(labels, touching[touching > 0]).sum()

    residual = np.abs(img - model).max(axis=-1)
    paper = outside & ~unlike
    noise = float(np.median(residual[paper])) if paper.any() else 5.0
    luminance = img.mean(axis=-1)
    mean = ndimage.uniform_filter(luminance, 5)
    texture = np.sqrt(np.maximum(ndimage.uniform_filter(luminance**2, 5) - mean**2, 0.0))
    inside = ndimage.binary_erosion(hard, iterations=margin)
    kept = inside & (residual < max(4.0, 3 * noise)) & (texture < max(2.0, 2 * noise))
    area = float(hard.sum())
    return BackdropCheck(left_out=float(left_out / area), kept=float(kept.sum() / area))


def nothing_left_out(share: float) -> float:
    """Little that is not backdrop lies against the mask (<= 20% of the subject's area is
    full marks, >= 50% none)."""
    return 1.0 - _ramp(share, 0.2, 0.5)


def no_backdrop_kept(share: float) -> float:
    """Little flat backdrop inside the mask (<= 1% of the subject's area is full marks, >= 5%
    none; a good cutout keeps almost none)."""
    return 1.0 - _ramp(share, 0.01, 0.05)


def score_mask(
    alpha: np.ndarray,
    rgb: np.ndarray | None = None,
    agreement: float | None = None,
    outline: float | None = None,
) -> Confidence:
    """Score a soft alpha (float [0, 1], HxW), optionally with the RGB image it came from,
    the IoU between it and the model's second-view mask and their IoU along the outline."""
    small = _downsample(alpha, _WORK_SIDE).astype(np.float32)
    hard = small >= 0.5
    signals = {
        "boundary_certainty": boundary_certainty(small, hard),
        "area_sanity": area_sanity(hard),
        "coherence": coherence(hard),
        "border_clearance": border_clearance(hard),
    }
    if agreement is not None:
        signals["view_agreement"] = view_agreement(agreement)
    if outline is not None:
        signals["edge_agreement"] = edge_agreement(outline)
    if rgb is not None:
        rgb_small = _downsample(rgb, _WORK_SIDE).astype(np.float32)
        if rgb_small.shape[:2] != hard.shape:
            raise ValueError("image and mask sizes differ")
        signals["edge_contrast"] = edge_contrast(rgb_small, hard)
        check = backdrop_check(rgb_small, small)
        if check is not None:
            signals["nothing_left_out"] = nothing_left_out(check.left_out)
            signals["no_backdrop_kept"] = no_backdrop_kept(check.kept)
    total_w = sum(SIGNAL_WEIGHTS[k] for k in signals)
    log_sum = sum(SIGNAL_WEIGHTS[k] * np.log(max(v, 1e-4)) for k, v in signals.items())
    score = float(np.exp(log_sum / total_w))
    return Confidence(
        score=round(min(max(score, 0.0), 1.0), 4),
        signals={k: round(float(v), 4) for k, v in signals.items()},
    )
