"""Colour decontamination of a cutout's soft edge: the subject's own colours where the mask is
partly transparent, instead of the photo's mix of subject and backdrop.

A pixel of hair half covered by the subject is, in the photo, half hair and half backdrop
(``I = a F + (1 - a) B``). Keeping ``I`` as the cutout's colour carries the backdrop onto every
new background: a grey fringe on a white page, a blue halo from a seamless. pymatting's
multi-level foreground estimation (Germer et al. 2020) solves for ``F`` given the photo and the
mask; only the soft band (alpha strictly between ``SOLID`` and ``CLEAR``) is replaced, so solid
subject pixels stay exactly the photo's. The band's bounding box (with a margin for context) is
solved, scaled down to at most ``MAX_PIXELS`` for a 24 MP photo's cost.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CLEAR = 2  # alpha (0-255) at or below which a pixel is background
SOLID = 253  # alpha at or above which a pixel is solid subject
MARGIN = 24  # pixels of context around the band
MAX_PIXELS = 4_000_000  # the solved box is scaled down to this many pixels at most


def soft_band(alpha: np.ndarray) -> np.ndarray:
    """Where the mask is partly transparent (``alpha`` uint8)."""
    return (alpha > CLEAR) & (alpha < SOLID)


def decontaminate(rgb: Image.Image, mask: Image.Image) -> Image.Image:
    """``rgb`` with the soft band of ``mask`` replaced by the estimated subject colours."""
    from pymatting import estimate_foreground_ml

    alpha = np.asarray(mask.convert("L"))
    band = soft_band(alpha)
    if not band.any():
        return rgb
    rows, cols = np.nonzero(band)
    top, bottom = max(0, rows.min() - MARGIN), min(alpha.shape[0], rows.max() + MARGIN + 1)
    left, right = max(0, cols.min() - MARGIN), min(alpha.shape[1], cols.max() + MARGIN + 1)
    box = (left, top, right, bottom)
    crop_rgb, crop_mask = rgb.convert("RGB").crop(box), mask.convert("L").crop(box)
    size = crop_rgb.size
    scale = min(1.0, (MAX_PIXELS / (size[0] * size[1])) ** 0.5)
    if scale < 1.0:
        small = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        crop_rgb = crop_rgb.resize(small, Image.Resampling.BOX)
        crop_mask = crop_mask.resize(small, Image.Resampling.BOX)
    image = np.asarray(crop_rgb, dtype=np.float64) / 255.0
    soft = np.asarray(crop_mask, dtype=np.float64) / 255.0
    foreground = np.clip(estimate_foreground_ml(image, soft) * 255.0 + 0.5, 0, 255)
    solved = Image.fromarray(foreground.astype(np.uint8), mode="RGB")
    if solved.size != size:
        solved = solved.resize(size, Image.Resampling.BILINEAR)
    out = np.array(rgb.convert("RGB"))
    window = out[top:bottom, left:right]
    inside = band[top:bottom, left:right]
    window[inside] = np.asarray(solved)[inside]
    return Image.fromarray(out, mode="RGB")


def edge_colour_error(colours: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> float | None:
    """Mean absolute colour error (0-255 scale) over the soft band of the true ``alpha``
    (uint8), weighted by how mixed each pixel is (``a (1 - a)``); None without a band."""
    band = soft_band(alpha)
    if not band.any():
        return None
    a = alpha[band].astype(np.float64) / 255.0
    weight = a * (1.0 - a)
    diff = np.abs(colours[band].astype(np.float64) - truth[band].astype(np.float64)).mean(axis=1)
    return float((diff * weight).sum() / weight.sum())
