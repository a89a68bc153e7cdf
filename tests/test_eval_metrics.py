"""Matte metrics and confidence calibration on hand-made cases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cutline.evaluation.calibration import (
    calibrate,
    cross_validate,
    precision_lower_bound,
    roc_auc,
    rules_fragment,
)
from cutline.evaluation.eval_metrics import boundary_f, iou, matte_metrics


def _square(size: int = 100, lo: int = 20, hi: int = 80) -> np.ndarray:
    alpha = np.zeros((size, size), dtype=np.float32)
    alpha[lo:hi, lo:hi] = 1.0
    return alpha


def test_a_perfect_matte_scores_perfectly():
    truth = _square()
    m = matte_metrics(truth, truth)
    assert (m.iou, m.mae, m.sad, m.gradient_error, m.boundary_f) == (1.0, 0.0, 0.0, 0.0, 1.0)
    assert m.good


def test_iou_and_errors_of_a_shifted_square():
    truth, pred = _square(), _square(lo=30, hi=90)  # 60x60 squares overlapping 50x50
    assert iou(pred, truth) == pytest.approx(2500 / (3600 + 3600 - 2500))
    m = matte_metrics(pred, truth)
    assert m.mae == pytest.approx(2 * (3600 - 2500) / 10000, abs=1e-4)
    assert m.sad == pytest.approx(2 * 1.1, abs=1e-3)  # thousands of pixels
    assert m.gradient_error > 0 and not m.good


def test_boundary_f_tolerates_a_one_pixel_shift_but_not_a_far_one():
    truth = _square()
    assert boundary_f(_square(lo=21, hi=81), truth) == pytest.approx(1.0, abs=0.01)
    assert boundary_f(_square(lo=40, hi=60), truth) == 0.0
    assert matte_metrics(np.zeros((50, 50)), np.zeros((50, 50))).boundary_f == 1.0


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        matte_metrics(np.zeros((10, 10)), np.zeros((10, 12)))


def test_roc_auc_counts_pairs_and_ties():
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.5, 0.7], [True, True]) is None


def test_with_few_images_the_threshold_meets_the_target_only_on_them_and_says_so():
    scores = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5]
    good = [True, True, True, False, True, False, False]
    c = calibrate(scores, good, target_precision=0.98)
    assert c.recommended is not None and c.recommended.threshold == 0.85
    assert (c.recommended.auto, c.recommended.precision) == (3, 1.0)
    assert c.recommended.coverage == pytest.approx(3 / 4)
    assert c.recommended.precision_lower_bound < 0.5 and not c.proven  # three prove little
    lenient = calibrate(scores, good, target_precision=0.75)
    assert lenient.recommended.threshold == 0.7  # 4 good of 5
    fragment = rules_fragment(c, model="u2netp", confidence_version="3", evaluated_on="x")
    assert "NOT PROVEN" in fragment
    assert yaml.safe_load(fragment)["confidence"]["calibration"]["proven"] is False


def test_the_lower_bound_needs_149_clean_images_to_promise_98_percent():
    assert precision_lower_bound(149, 149) >= 0.98 > precision_lower_bound(148, 148)
    assert precision_lower_bound(148, 149) < 0.98 <= precision_lower_bound(235, 236)  # one miss
    assert precision_lower_bound(0, 0) == 0.0


def test_the_threshold_is_the_lowest_whose_lower_bound_meets_the_target():
    # 200 good cutouts scoring 0.99..0.80, one bad at 0.85, then a mix below 0.8
    scores = [round(0.99 - i * 0.00095, 5) for i in range(200)] + [0.85] + [0.7, 0.6] * 20
    good = [True] * 200 + [False] + [True, False] * 20
    c = calibrate(scores, good, target_precision=0.98)
    assert c.proven and c.recommended.precision_lower_bound >= 0.98
    point_only = [p for p in c.curve if p.precision >= 0.98]
    assert c.recommended.threshold > min(p.threshold for p in point_only)  # the bound costs
    assert c.recommended.threshold > 0.8


def test_cross_validation_keeps_each_subjects_images_in_one_fold():
    # Five subjects of good cutouts, and one subject whose every cutout is bad but scores
    # high: chosen without that subject, the threshold lets its images through.
    scores, good, subjects = [], [], []
    for s in range(5):
        scores += [0.9 + 0.001 * i for i in range(40)]
        good += [True] * 40
        subjects += [f"good-{s}"] * 40
    scores += [0.95] * 10
    good += [False] * 10
    subjects += ["teddy"] * 10
    cv = cross_validate(scores, good, subjects, target_precision=0.9, folds=3)
    assert cv is not None and cv.subjects == 6
    assert cv.good_in_auto < cv.auto  # the teddy's fold was routed without knowing it
    assert cv.auto - cv.good_in_auto == 10  # all of its images, together
    assert cross_validate(scores, good, ["one"] * len(scores), 0.9) is None


def test_no_recommendation_when_the_best_cutout_is_bad():
    c = calibrate([0.9, 0.5], [False, True], target_precision=0.98)
    assert c.recommended is None
    with pytest.raises(ValueError, match="no threshold"):
        rules_fragment(c, model="u2netp", confidence_version="3", evaluated_on="x")


def test_edge_refinement_changes_only_the_edge_band():
    from cutline.imaging.refine import refine_alpha

    alpha = np.zeros((120, 160), dtype=np.float32)
    alpha[30:90, 40:120] = 1.0
    rgb = np.zeros((120, 160, 3), dtype=np.uint8)
    rgb[28:92, 38:122] = 200  # the photo's edge sits 2 px outside the mask's
    refined = refine_alpha(alpha, rgb)
    assert refined[60, 80] == 1.0 and refined[5, 5] == 0.0  # solid inside, clear outside
    assert refined[29, 80] > 0.2  # the edge moved towards the photo's edge
    with pytest.raises(ValueError, match="unknown edge refinement"):
        refine_alpha(alpha, rgb, "magic")


def test_the_threshold_holds_whichever_fifth_of_the_subjects_is_left_out():
    from cutline.evaluation.calibration import choose_threshold, threshold_curve

    rng = np.random.default_rng(0)
    scores, good, subjects = [], [], []
    for s in range(15):  # each subject: mostly good, a few bad cutouts clustered together
        bad_at = rng.uniform(0.2, 0.7)
        for _ in range(30):
            is_bad = rng.random() < 0.1
            scores.append(round(bad_at + rng.normal(0, 0.02) if is_bad else rng.uniform(0.3, 1), 4))
            good.append(not is_bad)
            subjects.append(f"subject-{s}")
    c = calibrate(scores, good, target_precision=0.98, subjects=subjects)
    in_sample, proven = choose_threshold(threshold_curve(scores, good), 0.98)
    assert proven and c.proven
    folds = [t for t in c.cross_validation.thresholds if t is not None]
    assert c.recommended.threshold >= max([in_sample.threshold, *folds])
    assert c.recommended.threshold > in_sample.threshold  # here a fold needed more margin
    assert c.recommended.precision_lower_bound >= 0.98
    assert c.recommended in c.curve
