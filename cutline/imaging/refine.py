"""Optional edge refinement of the AI mask: a guided filter that lets the soft edge follow
the photo's own edges (hair, fur, fabric fringes), switched on per category by the rules."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

METHODS = ("guided-filter",)


def guided_filter(alpha: np.ndarray, rgb: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter of ``alpha`` (float [0, 1]) with the grey image as guide."""
    guide = rgb.astype(np.float32).mean(axis=2) / 255.0
    size = 2 * radius + 1

    def box(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x, size=size, mode="reflect")

    mean_i, mean_p = box(guide), box(alpha)
    cov_ip = box(guide * alpha) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def refine_alpha(alpha: np.ndarray, rgb: np.ndarray, method: str = "guided-filter") -> np.ndarray:
    """The alpha with its edge band refined; solid inside and clear outside stay as they were.

    Works at the inference size (the caller upscales), so its cost is a few box filters.
    """
    if method not in METHODS:
        raise ValueError(f"unknown edge refinement {method!r}; known: {', '.join(METHODS)}")
    alpha = alpha.astype(np.float32)
    radius = max(2, round(0.006 * max(alpha.shape)))
    filtered = np.clip(guided_filter(alpha, rgb, radius, eps=1e-3), 0.0, 1.0)
    hard = alpha >= 0.5
    band = ndimage.binary_dilation(hard, iterations=2 * radius) & ~ndimage.binary_erosion(
        hard, iterations=2 * radius
    )
    return np.where(band, filtered, alpha).astype(np.float32)
