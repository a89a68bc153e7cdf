"""A per-image confidence in [0, 1] that the AI mask is usable, with the signals behind it.

Each signal is in [0, 1] (1 = looks right) and is kept in the ledger so a retoucher can
see why an image was flagged. The score is a weighted geometric mean, so one bad signal
pulls the score down hard. The strongest signal is ``view_agreement``: the model is run a
second time on a padded (rescaled) view of the image, and a cutout the model cannot
reproduce from a slightly different framing is usually wrong (glass, plants, subjects it
half-recognises). ``boundary_certainty`` measures how much of the soft mask is undecided.
The ramps and weights were set on ../shared/evaldata-dev with `cutline eval` (see
docs/confidence.md); the routing threshold comes from the same evaluation.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

SIGNAL_WEIGHTS: dict[str, float] = {
    "view_agreement": 3.0,
    "boundary_certainty": 1.5,
    "coherence": 1.0,
    "area_sanity": 1.0,
    "border_clearance": 0.5,
    "edge_contrast": 0.5,
}
_WORK_SIDE = 512
# Bump when signals or weights change: reruns then rescore instead of reusing scores.
CONFIDENCE_VERSION = "2"


class Confidence(BaseModel):
    """The score and the named signals that produced it."""

    score: float = Field(ge=0, le=1, description="Confidence that the AI mask is usable.")
    signals: dict[str, float] = Field(description="Each signal in [0, 1]; 1 = looks right.")

    def weakest(self) -> str:
        """The signal that pulled the score down most."""
        return min(self.signals, key=self.signals.get)


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


def score_mask(
    alpha: np.ndarray, rgb: np.ndarray | None = None, agreement: float | None = None
) -> Confidence:
    """Score a soft alpha (float [0, 1], HxW), optionally with the RGB image it came from
    and the IoU between it and the model's second-view mask."""
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
    if rgb is not None:
        rgb_small = _downsample(rgb, _WORK_SIDE).astype(np.float32)
        if rgb_small.shape[:2] != hard.shape:
            raise ValueError("image and mask sizes differ")
        signals["edge_contrast"] = edge_contrast(rgb_small, hard)
    total_w = sum(SIGNAL_WEIGHTS[k] for k in signals)
    log_sum = sum(SIGNAL_WEIGHTS[k] * np.log(max(v, 1e-4)) for k, v in signals.items())
    score = float(np.exp(log_sum / total_w))
    return Confidence(
        score=round(min(max(score, 0.0), 1.0), 4),
        signals={k: round(float(v), 4) for k, v in signals.items()},
    )
