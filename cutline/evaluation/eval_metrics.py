"""How close a predicted alpha matte is to the ground truth: the figures studios and matting
papers quote (IoU, MAE, SAD, gradient error, boundary F-measure)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

GOOD_IOU = 0.90  # a cutout with IoU below this needs a retoucher


class MatteMetrics(BaseModel):
    """Agreement of one predicted alpha with its ground truth (both float [0, 1], same size)."""

    iou: float = Field(description="Intersection over union of alpha >= 0.5.")
    mae: float = Field(description="Mean absolute alpha error, in [0, 1].")
    sad: float = Field(description="Sum of absolute alpha differences, in thousands.")
    gradient_error: float = Field(
        description="Sum of squared differences of alpha gradients (sigma 1.4), in thousands."
    )
    boundary_f: float = Field(
        description="F-measure of the outlines, matched within 1% of the image diagonal."
    )

    @property
    def good(self) -> bool:
        """Whether the cutout is usable without a retoucher (IoU >= 0.90)."""
        return self.iou >= GOOD_IOU


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the two mattes thresholded at 0.5."""
    p, t = pred >= 0.5, truth >= 0.5
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else 1.0


def gradient_error(pred: np.ndarray, truth: np.ndarray, sigma: float = 1.4) -> float:
    """Sum of squared differences of the Gaussian-derivative gradient magnitudes (thousands)."""

    def magnitude(alpha: np.ndarray) -> np.ndarray:
        gx = ndimage.gaussian_filter(alpha, sigma, order=(0, 1))
        gy = ndimage.gaussian_filter(alpha, sigma, order=(1, 0))
        return np.hypot(gx, gy)

    return float(((magnitude(pred) - magnitude(truth)) ** 2).sum() / 1000.0)


def _outline(hard: np.ndarray) -> np.ndarray:
    return hard & ~ndimage.binary_erosion(hard)


def boundary_f(pred: np.ndarray, truth: np.ndarray, tolerance: float = 0.01) -> float:
    """F-measure of outline pixels matched within ``tolerance`` x the image diagonal."""
    p, t = _outline(pred >= 0.5), _outline(truth >= 0.5)
    if not p.any() and not t.any():
        return 1.0
    if not p.any() or not t.any():
        return 0.0
    radius = max(1, round(tolerance * float(np.hypot(*pred.shape))))
    near_t = ndimage.distance_transform_edt(~t) <= radius
    near_p = ndimage.distance_transform_edt(~p) <= radius
    precision = float((p & near_t).sum() / p.sum())
    recall = float((t & near_p).sum() / t.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def matte_metrics(pred: np.ndarray, truth: np.ndarray) -> MatteMetrics:
    """Every figure for one image; ``pred`` and ``truth`` are float alpha in [0, 1], same shape."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in size")
    diff = np.abs(pred.astype(np.float32) - truth.astype(np.float32))
    return MatteMetrics(
        iou=round(iou(pred, truth), 5),
        mae=round(float(diff.mean()), 5),
        sad=round(float(diff.sum() / 1000.0), 3),
        gradient_error=round(gradient_error(pred, truth), 3),
        boundary_f=round(boundary_f(pred, truth), 5),
    )
