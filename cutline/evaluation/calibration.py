"""Turning confidence scores and ground truth into a routing threshold a studio can trust:
ROC AUC, the auto lane's precision and coverage at each threshold, and the recommended
threshold as a rules fragment that routing reads."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, Field


class ThresholdPoint(BaseModel):
    """The auto lane if every image scoring at or above ``threshold`` went there."""

    threshold: float
    auto: int = Field(description="Images in the auto lane.")
    good_in_auto: int
    precision: float = Field(description="Share of auto-lane cutouts that are good.")
    precision_lower_95: float = Field(description="Wilson 95% lower bound of the precision.")
    coverage: float = Field(description="Share of all good cutouts that reach the auto lane.")
    auto_share: float = Field(description="Share of all images that reach the auto lane.")


class Calibration(BaseModel):
    """How well scores separate good from bad cutouts, and the threshold to route on."""

    images: int
    good: int
    roc_auc: float | None = Field(description="None when only good or only bad cutouts exist.")
    target_precision: float
    recommended: ThresholdPoint | None = Field(
        description="Lowest threshold whose auto lane meets the target precision (most coverage)."
    )
    curve: list[ThresholdPoint]


def roc_auc(scores: list[float], good: list[bool]) -> float | None:
    """Probability that a good cutout scores above a bad one (ties count half)."""
    pos = np.array([s for s, g in zip(scores, good, strict=True) if g], dtype=float)
    neg = np.array([s for s, g in zip(scores, good, strict=True) if not g], dtype=float)
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


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


def _wilson_lower(successes: int, trials: int, z: float = 1.96) -> float:
    if trials == 0:
        return 0.0
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return (centre - spread) / (1 + z * z / trials)


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
                precision_lower_95=round(_wilson_lower(hits, len(auto)), 4),
                coverage=round(hits / total_good, 4) if total_good else 0.0,
                auto_share=round(len(auto) / len(scores), 4),
            )
        )
    return points


def calibrate(scores: list[float], good: list[bool], target_precision: float) -> Calibration:
    """Every figure, and the lowest threshold whose auto lane is at least ``target_precision``
    good (None when no threshold reaches it)."""
    curve = threshold_curve(scores, good)
    meeting = [p for p in curve if p.precision >= target_precision]
    auc = roc_auc(scores, good)
    return Calibration(
        images=len(scores),
        good=sum(good),
        roc_auc=None if auc is None else round(auc, 4),
        target_precision=target_precision,
        recommended=min(meeting, key=lambda p: p.threshold) if meeting else None,
        curve=curve,
    )


def rules_fragment(
    calibration: Calibration, *, model: str, confidence_version: str, evaluated_on: str
) -> str:
    """The recommended threshold as a rules fragment (YAML) to `include:` from a rules file."""
    point = calibration.recommended
    if point is None:
        raise ValueError("no threshold reaches the target precision; nothing to recommend")
    body = {
        "confidence": {
            "review_below": point.threshold,
            "calibration": {
                "model": model,
                "confidence_version": confidence_version,
                "target_precision": calibration.target_precision,
                "precision": point.precision,
                "precision_lower_95": point.precision_lower_95,
                "coverage": point.coverage,
                "roc_auc": calibration.roc_auc,
                "images": calibration.images,
                "evaluated_on": evaluated_on,
                "date": date.today().isoformat(),
            },
        }
    }
    header = (
        "# Confidence threshold written by `cutline eval`. Include it from a rules file:\n"
        "#   include: [<this file>]\n"
        f"# Cutouts scoring below {point.threshold} go to review. With {calibration.images} "
        "evaluated images the\n# precision estimate is rough (see precision_lower_95): "
        "re-run `cutline eval` on more of your own images.\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False)


def write_fragment(text: str, path: Path) -> Path:
    """Write a rules fragment file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
