"""Turning confidence scores and ground truth into a routing threshold a studio can trust:
ROC AUC, the auto lane's precision and coverage at each threshold, and the recommended
threshold as a rules fragment that routing reads."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import yaml
from pydantic import BaseModel, Field
from scipy import stats


class ThresholdPoint(BaseModel):
    """The auto lane if every image scoring at or above ``threshold`` went there."""

    threshold: float
    auto: int = Field(description="Images in the auto lane.")
    good_in_auto: int
    precision: float = Field(description="Share of auto-lane cutouts that are good.")
    precision_lower_bound: float = Field(
        description="One-sided 95% lower confidence bound of the precision (Clopper-Pearson): "
        "the precision this threshold can promise from this many images."
    )
    coverage: float = Field(description="Share of all good cutouts that reach the auto lane.")
    auto_share: float = Field(description="Share of all images that reach the auto lane.")


class CrossValidation(BaseModel):
    """The threshold rule measured out of sample: the subjects are split into folds; each
    fold is routed with the threshold chosen on the other folds, and the folds' auto lanes
    are pooled."""

    folds: int
    subjects: int
    thresholds: list[float | None] = Field(description="Threshold chosen without each fold.")
    auto: int
    good_in_auto: int
    precision: float
    precision_lower_bound: float
    coverage: float


class Calibration(BaseModel):
    """How well scores separate good from bad cutouts, and the threshold to route on."""

    images: int
    good: int
    roc_auc: float | None = Field(description="None when only good or only bad cutouts exist.")
    target_precision: float
    recommended: ThresholdPoint | None = Field(
        description="Lowest threshold (most coverage) whose auto lane meets the target: by its "
        "lower bound where the images suffice (proven), else by its point estimate; raised to "
        "the highest threshold chosen with any cross-validation fold left out."
    )
    proven: bool = Field(
        default=False,
        description="The recommended threshold's lower bound meets the target; when False the "
        "images are too few to promise it and the threshold only meets it on these images.",
    )
    curve: list[ThresholdPoint]
    cross_validation: CrossValidation | None = Field(
        default=None,
        description="The threshold rule tried out of sample: chosen without each fold's "
        "subjects, measured on them.",
    )


def roc_auc(scores: list[float], good: list[bool]) -> float | None:
    """Probability that a good cutout scores above a bad one (ties count half): the
    Mann-Whitney U of the good scores against the bad, over the pairs (SciPy's)."""
    from scipy.stats import mannwhitneyu

    pos = [s for s, g in zip(scores, good, strict=True) if g]
    neg = [s for s, g in zip(scores, good, strict=True) if not g]
    if not pos or not neg:
        return None
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def roc_curve(scores: list[float], good: list[bool]) -> tuple[list[float], list[float]]:
    """False-positive and true-positive rates (bad let through vs good let through) as the
    threshold falls from above the highest score to the lowest."""
    total_good = sum(good) or 1
    total_bad = (len(good) - sum(good)) or 1
    fpr, tpr = [0.0], [0.0]
    for threshold in sorted(set(scores), reverse=True):
        auto = [g for s, g in zip(scores, good, strict=True) if s >= threshold]
        tpr.append(sum(auto) / total_good)
        fpr.append((len(auto) - sum(auto)) / total_bad)
    return fpr, tpr


BOUND_CONFIDENCE = 0.95


def precision_lower_bound(hits: int, trials: int, confidence: float = BOUND_CONFIDENCE) -> float:
    """The precision that ``hits`` good of ``trials`` auto-lane cutouts prove with the given
    one-sided confidence (exact Clopper-Pearson bound): with no mistakes, 149 images are
    needed to prove 98%, 59 only prove 95%."""
    if trials == 0 or hits == 0:
        return 0.0
    return float(stats.beta.ppf(1.0 - confidence, hits, trials - hits + 1))


def threshold_curve(scores: list[float], good: list[bool]) -> list[ThresholdPoint]:
    """The auto lane at every distinct score used as the threshold, highest first."""
    total_good = sum(good)
    points = []
    for threshold in sorted(set(scores), reverse=True):
        auto = [g for s, g in zip(scores, good, strict=True) if s >= threshold]
        hits = sum(auto)
        points.append(
            ThresholdPoint(
                threshold=round(threshold, 4),
                auto=len(auto),
                good_in_auto=hits,
                precision=round(hits / len(auto), 4),
                precision_lower_bound=round(precision_lower_bound(hits, len(auto)), 4),
                coverage=round(hits / total_good, 4) if total_good else 0.0,
                auto_share=round(len(auto) / len(scores), 4),
            )
        )
    return points


def choose_threshold(
    curve: list[ThresholdPoint], target_precision: float
) -> tuple[ThresholdPoint | None, bool]:
    """The lowest threshold whose auto lane's precision *lower bound* meets the target, and
    True; if none does (too few images), the lowest whose point estimate does, and False."""
    proven = [p for p in curve if p.precision_lower_bound >= target_precision]
    if proven:
        return min(proven, key=lambda p: p.threshold), True
    meeting = [p for p in curve if p.precision >= target_precision]
    return (min(meeting, key=lambda p: p.threshold) if meeting else None), False


def calibrate(
    scores: list[float],
    good: list[bool],
    target_precision: float,
    subjects: list[str] | None = None,
) -> Calibration:
    """Every figure, the threshold to route on, and, when ``subjects`` name what each image
    shows, the rule cross-validated by subject.

    The threshold is `choose_threshold`'s on all images, raised to the highest threshold the
    rule chose with any fold's subjects left out: the lowest threshold that meets the bound
    tends to sit just above one subject's cluster of bad cutouts, and a subject nobody has
    seen yet may cluster a little higher. Requiring the threshold to hold whichever fifth of
    the subjects is missing buys that margin."""
    curve = threshold_curve(scores, good)
    recommended, proven = choose_threshold(curve, target_precision)
    cv = cross_validate(scores, good, subjects, target_precision) if subjects else None
    if recommended is not None and proven and cv is not None:
        chosen = [t for t in cv.thresholds if t is not None]
        stable = max([recommended.threshold, *chosen])
        point = min((p for p in curve if p.threshold >= stable), key=lambda p: p.threshold)
        if point.precision_lower_bound >= target_precision:
            recommended = point
    auc = roc_auc(scores, good)
    return Calibration(
        images=len(scores),
        good=sum(good),
        roc_auc=None if auc is None else round(auc, 4),
        target_precision=target_precision,
        recommended=recommended,
        proven=proven,
        curve=curve,
        cross_validation=cv,
    )


def cross_validate(
    scores: list[float],
    good: list[bool],
    subjects: list[str],
    target_precision: float,
    folds: int = 5,
) -> CrossValidation | None:
    """The threshold rule out of sample: images of one subject (a product, a composite's
    source photo) always fall in the same fold, so no fold is routed with a threshold chosen
    on its own subjects. None when there are fewer subjects than folds."""
    distinct = sorted(set(subjects), key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    if len(distinct) < folds:
        return None
    fold_of = {subject: rank % folds for rank, subject in enumerate(distinct)}
    fold = [fold_of[s] for s in subjects]
    thresholds: list[float | None] = []
    auto = hits = 0
    for k in range(folds):
        train = [i for i, f in enumerate(fold) if f != k]
        test = [i for i, f in enumerate(fold) if f == k]
        point, _ = choose_threshold(
            threshold_curve([scores[i] for i in train], [good[i] for i in train]),
            target_precision,
        )
        thresholds.append(point.threshold if point else None)
        if point is None or not test:
            continue
        routed = [good[i] for i in test if scores[i] >= point.threshold]
        auto += len(routed)
        hits += sum(routed)
    total_good = sum(good)
    return CrossValidation(
        folds=folds,
        subjects=len(distinct),
        thresholds=thresholds,
        auto=auto,
        good_in_auto=hits,
        precision=round(hits / auto, 4) if auto else 0.0,
        precision_lower_bound=round(precision_lower_bound(hits, auto), 4),
        coverage=round(hits / total_good, 4) if total_good else 0.0,
    )


def rules_fragment(
    calibration: Calibration,
    *,
    model: str,
    confidence_version: str,
    evaluated_on: str,
    by_category: dict[str, Calibration] | None = None,
) -> str:
    """The recommended threshold as a rules fragment (YAML) to `include:` from a rules file,
    with a threshold of its own for each category in ``by_category`` whose images prove one."""
    point = calibration.recommended
    if point is None:
        raise ValueError("no threshold reaches the target precision; nothing to recommend")
    own = {
        category: c.recommended.threshold
        for category, c in sorted((by_category or {}).items())
        if c.proven and c.recommended is not None
    }
    body = {
        "confidence": {
            "review_below": point.threshold,
            **({"by_category": own} if own else {}),
            "calibration": {
                "model": model,
                "confidence_version": confidence_version,
                "target_precision": calibration.target_precision,
                "precision": point.precision,
                "precision_lower_bound": point.precision_lower_bound,
                "bound": "one-sided 95% Clopper-Pearson",
                "proven": calibration.proven,
                "coverage": point.coverage,
                "roc_auc": calibration.roc_auc,
                "images": calibration.images,
                **_cross_validation_fields(calibration.cross_validation),
                "evaluated_on": evaluated_on,
                "date": date.today().isoformat(),
            },
        }
    }
    proof = (
        f"# {calibration.images} evaluated images prove an auto-lane precision of at least "
        f"{point.precision_lower_bound:.1%}\n# (one-sided 95% bound) at this threshold.\n"
        if calibration.proven
        else f"# NOT PROVEN: {calibration.images} evaluated images are too few to promise "
        f"{calibration.target_precision:.0%}\n# (the lower bound is only "
        f"{point.precision_lower_bound:.1%}): re-run `cutline eval` on more of your own images.\n"
    )
    header = (
        "# Confidence threshold written by `cutline eval`. Include it from a rules file:\n"
        "#   include: [<this file>]\n"
        f"# Cutouts scoring below {point.threshold} go to review.\n" + proof
    )
    return header + yaml.safe_dump(body, sort_keys=False)


def _cross_validation_fields(cv: CrossValidation | None) -> dict[str, float | int]:
    if cv is None:
        return {}
    return {
        "cross_validated_precision": cv.precision,
        "cross_validated_precision_lower_bound": cv.precision_lower_bound,
        "cross_validated_coverage": cv.coverage,
        "subjects": cv.subjects,
    }


def write_fragment(text: str, path: Path) -> Path:
    """Write a rules fragment file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
