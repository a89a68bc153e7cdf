"""Colour decontamination: the soft edge gets the subject's colours, solid pixels stay."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cutline.imaging.decontaminate import decontaminate, edge_colour_error, soft_band


def _photo(width: int = 160, height: int = 120):
    """A red subject whose right edge fades over 40 px into a blue backdrop, with a little
    texture: the photo, its alpha and the subject's true colours."""
    rng = np.random.default_rng(3)
    ramp = np.clip((110 - np.arange(width)) / 40.0, 0.0, 1.0)
    alpha = np.repeat(ramp[None, :], height, axis=0)
    subject = np.empty((height, width, 3))
    subject[...] = (200, 40, 30)
    subject += rng.normal(0, 4, subject.shape)
    backdrop = np.array([40, 60, 210], dtype=np.float64)
    photo = alpha[..., None] * subject + (1 - alpha[..., None]) * backdrop
    to8 = lambda a: np.clip(a + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
    return to8(photo), to8(alpha * 255), to8(subject)


def test_the_soft_edge_gets_the_subjects_colours_and_solid_pixels_stay():
    photo, alpha, subject = _photo()
    out = np.asarray(decontaminate(Image.fromarray(photo), Image.fromarray(alpha, mode="L")))
    before = edge_colour_error(photo, subject, alpha)
    after = edge_colour_error(out, subject, alpha)
    assert before > 40 and after < before / 3, (before, after)
    solid = alpha >= 253
    assert np.array_equal(out[solid], photo[solid])  # the subject itself is untouched
    assert soft_band(alpha).sum() > 0


def test_a_mask_without_soft_pixels_leaves_the_photo_as_it_is():
    photo, alpha, _ = _photo()
    hard = np.where(alpha > 127, 255, 0).astype(np.uint8)
    image = Image.fromarray(photo)
    assert decontaminate(image, Image.fromarray(hard, mode="L")) is image
    assert edge_colour_error(photo, photo, hard) is None
