"""The confidence score's signals on hand-made studio pictures whose right answer is known:
a plush toy whose dark shirt the mask left off, a soft edge the two views disagree on."""

from __future__ import annotations

import numpy as np
import pytest

from cutline.imaging.confidence import (
    SIGNAL_WEIGHTS,
    backdrop_check,
    mask_agreement,
    outline_agreement,
    score_mask,
    weakest_signal,
)

H, W = 300, 240


def _sweep() -> np.ndarray:
    """A grey studio sweep: lighter at the bottom, with a little grain."""
    rng = np.random.default_rng(7)
    y = np.linspace(0.85, 1.0, H)[:, None, None]
    return np.clip(205 * y + rng.normal(0, 1.5, (H, W, 3)), 0, 255)


def _disk(cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)


def _toy_with_shirt() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An orange head on a dark shirt that runs off the bottom of the frame; returns the
    photo, the mask of the head alone (what the model gave) and the true mask."""
    photo = _sweep()
    head = _disk(110, 120, 60)
    shirt = np.zeros((H, W), np.float32)
    shirt[160:, 50:190] = 1.0
    photo[head > 0] = (215, 120, 40)
    photo[shirt > 0] = (45, 30, 28)
    return photo.astype(np.uint8), head, np.maximum(head, shirt)


def test_a_part_of_the_subject_left_outside_the_mask_lowers_the_backdrop_signal():
    photo, head_only, whole = _toy_with_shirt()
    check = backdrop_check(photo, head_only)
    assert check is not None and check.left_out > 0.5  # the shirt is larger than the head
    assert backdrop_check(photo, whole).left_out == pytest.approx(0.0, abs=0.02)
    wrong, right = score_mask(head_only, photo), score_mask(whole, photo)
    assert wrong.signals["nothing_left_out"] == 0.0 and right.signals["nothing_left_out"] == 1.0
    assert wrong.score < right.score
    assert wrong.weakest() == "nothing_left_out"


def test_backdrop_seen_through_a_handle_and_kept_in_the_mask_lowers_the_score():
    photo = _sweep()
    bag = np.zeros((H, W), np.float32)
    bag[170:270, 60:180] = 1.0
    ring = _disk(120, 120, 55) - _disk(120, 120, 49)  # a handle: a thin loop above the bag
    photo[bag > 0] = (170, 40, 50)
    photo[ring > 0] = (30, 30, 60)
    photo = photo.astype(np.uint8)
    filled = np.maximum(bag, _disk(120, 120, 55))  # the model filled the loop with paper
    right = np.maximum(bag, ring)
    assert backdrop_check(photo, filled).kept > 0.15
    assert backdrop_check(photo, right).kept < 0.01
    wrong = score_mask(filled, photo)
    assert wrong.signals["no_backdrop_kept"] == 0.0
    assert score_mask(right, photo).signals["no_backdrop_kept"] == 1.0


def test_a_contact_shadow_is_backdrop_not_a_missed_subject():
    photo = _sweep()
    head = _disk(150, 120, 60)
    shadow = _disk(215, 140, 50) * (1 - head)
    photo = photo * (1 - 0.3 * shadow[..., None])  # the floor darkened by 30%
    photo[head > 0] = (215, 120, 40)
    check = backdrop_check(photo.astype(np.uint8), head)
    assert check.left_out == pytest.approx(0.0, abs=0.02) and check.kept < 0.01


def test_the_backdrop_signal_stays_out_of_a_cluttered_frame():
    rng = np.random.default_rng(3)
    street = rng.integers(0, 255, (H, W, 3)).astype(np.uint8)
    head = _disk(150, 120, 60)
    assert backdrop_check(street, head) is None
    assert not {"nothing_left_out", "no_backdrop_kept"} & set(score_mask(head, street).signals)


def test_outline_agreement_sees_a_wrong_edge_the_whole_mask_iou_hides():
    big = _disk(150, 120, 100)
    ragged = big.copy()
    ragged[50:250:6, :] = np.roll(big[50:250:6, :], 4, axis=1)  # every 6th row's edge moved
    assert mask_agreement(big, ragged) > 0.95
    assert outline_agreement(big, ragged) < 0.9
    assert outline_agreement(big, big) == 1.0
    no_edge = score_mask(big, agreement=1.0, outline=outline_agreement(big, ragged))
    assert no_edge.signals["edge_agreement"] < 1.0


def test_raw_measurements_are_never_named_the_weakest_signal():
    signals = {"view_agreement_iou": 0.2, "edge_agreement_iou": 0.1, "coherence": 0.9}
    assert weakest_signal(signals) == "coherence"
    assert weakest_signal({"view_agreement_iou": 0.5}) is None
    assert set(SIGNAL_WEIGHTS) >= {"view_agreement", "edge_agreement", "no_backdrop_kept"}
