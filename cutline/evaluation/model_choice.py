"""Which model each category's cutouts should use, and which model gives doubtful cutouts a
second opinion, learned from `cutline eval`'s figures.

No single model wins everywhere: on the development photos MODNet (portrait matting) cut hair
and plush far better than u2netp but lost fringed bags and yarn. `cutline eval` with several
models measures each on every reference image. A category switches from the run's model (as
it ships: with the fallback below, which already fixes its doubtful cutouts) to another only
where that one is better by subject, not just on average: its mean IoU is higher
by ``MIN_GAIN`` over at least ``MIN_IMAGES`` images of at least ``MIN_SUBJECTS`` subjects, it
wins on most of the category's subjects, and its worst subject is no worse than the run model's
worst (many shots of one easy product decide nothing: on the calibration set a category mean
over few subjects chose MODNet for hair on one part and lost on the other part's teddy).

The second model given is also the fallback: a cutout scoring under the first model's own
review threshold is cut again with it and the higher-scoring cutout kept, a choice by the
image's own cutout that needs no category. The shipped mixture is then calibrated as one: its
confidence threshold is computed on the kept cutout's score of every image, so the auto lane's
precision bound holds for what a shoot would run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean

import yaml

from cutline.domain.manifest import clean_category
from cutline.evaluation.evaluate import ImageEval
from cutline.imaging.confidence import FALLBACK_MODEL_SCORE, FIRST_MODEL_SCORE

MIN_IMAGES = 3
MIN_SUBJECTS = 2
MIN_GAIN = 0.02


@dataclass(frozen=True)
class FallbackChoice:
    """The second opinion for doubtful cutouts: ``model`` cuts an image again when the first
    model's confidence is under ``below``; the cutout with the higher confidence is kept."""

    model: str
    below: float


@dataclass(frozen=True)
class CategoryChoice:
    """The model chosen for one category, with the figures that chose it."""

    category: str  # as the rules name it
    model: str
    mean_iou: dict[str, float]  # per model
    images: int
    subjects: int = 0
    subjects_won: dict[str, int] = field(default_factory=dict)  # per model: subjects it cut best
    worst_subject: dict[str, float] = field(default_factory=dict)  # per model: lowest mean IoU


def choose_models(
    results: list[ImageEval], default: str, fallback: FallbackChoice | None = None
) -> dict[str, CategoryChoice]:
    """Per category, the model its images should use (``default`` unless another proved
    better by subject); ``results`` holds every model's figures for the same images. With a
    ``fallback``, ``default`` is measured as it would ship, its doubtful cutouts given the
    fallback's second opinion: a category switches only where another model beats that (the
    fallback already fixes what the first model is unsure of; a switch must pay for running
    the other model on every image of the category)."""
    if fallback is not None:
        shipped = [
            kept.model_copy(update={"model": default})
            for kept in _kept_per_image(results, lambda _: default, fallback)
        ]
        results = [r for r in results if r.model != default] + shipped
    ious: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for result in results:
        subject = result.subject or result.name
        ious[clean_category(result.category)][result.model][subject].append(result.metrics.iou)
    choices = {}
    for category, per_model in sorted(ious.items()):
        means = {m: fmean(v for vs in s.values() for v in vs) for m, s in per_model.items()}
        by_subject = {m: {k: fmean(v) for k, v in s.items()} for m, s in per_model.items()}
        subjects = sorted(set.intersection(*(set(s) for s in by_subject.values())))
        won = {
            m: sum(1 for k in subjects if max(by_subject, key=lambda o: by_subject[o][k]) == m)
            for m in by_subject
        }
        worst = {m: min(s[k] for k in subjects) for m, s in by_subject.items() if subjects}
        images = min(sum(len(v) for v in s.values()) for s in per_model.values())
        best = max(means, key=lambda model: (means[model], model == default))
        proven = (
            default in means
            and images >= MIN_IMAGES
            and len(subjects) >= MIN_SUBJECTS
            and means[best] - means[default] >= MIN_GAIN
            and won[best] * 2 > len(subjects)
            and worst[best] >= worst[default]
        )
        choices[category] = CategoryChoice(
            category,
            best if proven else default,
            means,
            images,
            len(subjects),
            won,
            worst,
        )
    return choices


def mixture(
    results: list[ImageEval],
    choices: dict[str, CategoryChoice],
    fallback: FallbackChoice | None = None,
) -> list[ImageEval]:
    """The figures a shoot with these choices would produce: each image's chosen model's, or
    the fallback model's where the chosen one scored under ``fallback.below`` and the fallback
    scored higher (as the cutout stage keeps it; its `cut_by` names the model)."""
    return _kept_per_image(
        results, lambda category: choices[clean_category(category)].model, fallback
    )


def _kept_per_image(
    results: list[ImageEval],
    first_model: Callable[[str], str],
    fallback: FallbackChoice | None,
) -> list[ImageEval]:
    """Per image, the figures of the cutout the cutout stage would keep: ``first_model`` of
    the image's category, or the fallback's where the first scored under ``fallback.below``
    and the fallback scored higher; where the fallback ran, both scores are in the signals
    (as the ledger has them)."""
    by_image: dict[str, dict[str, ImageEval]] = defaultdict(dict)
    for result in results:
        by_image[result.name][result.model] = result
    kept = []
    for per_model in by_image.values():
        some = next(iter(per_model.values()))
        first = per_model[first_model(some.category)]
        chosen, signals = first, first.signals
        if fallback is not None and first.model != fallback.model:
            other = per_model.get(fallback.model)
            if other is not None and first.confidence < fallback.below:
                chosen = other if other.confidence > first.confidence else first
                signals = {
                    **chosen.signals,
                    FIRST_MODEL_SCORE: first.confidence,
                    FALLBACK_MODEL_SCORE: other.confidence,
                }
        kept.append(chosen.model_copy(update={"cut_by": chosen.model, "signals": signals}))
    return kept


def models_fragment(
    choices: dict[str, CategoryChoice], default: str, fallback: FallbackChoice | None = None
) -> str:
    """The choices as the `models:` part of a rules fragment (YAML); categories that keep the
    run's model are listed in the evidence only."""
    switched = {c.category: c.model for c in choices.values() if c.model != default}
    evidence = {
        c.category: {
            **{f"iou_{model}": round(iou, 4) for model, iou in sorted(c.mean_iou.items())},
            **{f"worst_subject_{m}": round(v, 4) for m, v in sorted(c.worst_subject.items())},
            **{f"subjects_won_{m}": n for m, n in sorted(c.subjects_won.items())},
            "images": c.images,
            "subjects": c.subjects,
            "chosen": c.model,
        }
        for c in choices.values()
    }
    second = {"fallback": {"model": fallback.model, "below": fallback.below}} if fallback else {}
    body = {"models": {**second, "by_category": switched, "evidence": evidence}}
    return (
        f"# Model per category written by `cutline eval` (the run's model, {default}, "
        f"elsewhere):\n# a category switches where another model's mean IoU is at least "
        f"{MIN_GAIN} higher on {MIN_IMAGES}+ images of {MIN_SUBJECTS}+ subjects, it wins most "
        "subjects and its worst subject is no worse."
        + (
            f"\n# A cutout scoring under {fallback.below} (the review threshold of its model "
            f"alone) is cut again with {fallback.model}; the higher-scoring cutout is kept."
            if fallback
            else ""
        )
        + "\n"
        + yaml.safe_dump(body, sort_keys=False)
    )


def choice_markdown(
    choices: dict[str, CategoryChoice], default: str, fallback: FallbackChoice | None = None
) -> str:
    """The choices as a report section."""
    models = sorted({m for c in choices.values() for m in c.mean_iou})
    shipped = f"{default} with the fallback" if fallback else default
    lines = [
        "## Model per category",
        "",
        f"A category switches from {shipped} where another model's mean IoU is at least "
        f"{MIN_GAIN} higher on {MIN_IMAGES} or more images of {MIN_SUBJECTS} or more subjects, "
        "it cuts most of the subjects best and its worst subject is no worse than "
        f"{default}'s (mean IoU per subject: worst, subjects won)."
        + (
            f" The {default} columns are {default} as it ships: its cutouts under "
            f"{fallback.below} given {fallback.model}'s second opinion."
            if fallback
            else ""
        ),
        "",
        "| category | images | subjects | "
        + " | ".join(f"IoU {m} | worst {m} | won {m}" for m in models)
        + " | chosen |",
        "|---|---|---|" + "---|---|---|" * len(models) + "---|",
    ]
    for c in choices.values():
        cells = " | ".join(
            f"{c.mean_iou[m]:.3f} | {c.worst_subject.get(m, 0):.3f} | {c.subjects_won.get(m, 0)}"
            if m in c.mean_iou
            else " | | "
            for m in models
        )
        lines.append(f"| {c.category} | {c.images} | {c.subjects} | {cells} | {c.model} |")
    return "\n".join(lines) + "\n"


def fallback_markdown(fallback: FallbackChoice | None, mixed: list[ImageEval], default: str) -> str:
    """The fallback's part of the report: how often it ran and what it changed."""
    if fallback is None:
        return (
            f"\nNo fallback model: {default} alone reaches no threshold at the target "
            "precision, so there is no review threshold to send doubtful cutouts on from.\n"
        )
    asked = [r for r in mixed if FIRST_MODEL_SCORE in r.signals]
    switched = [r for r in asked if r.cut_by == fallback.model]
    return (
        f"\nFallback: a cutout scoring under {fallback.below} (the review threshold of "
        f"{default} alone) is cut again with {fallback.model} and the higher-scoring cutout "
        f"kept. With the per-category choices above it would have run on "
        f"{len(asked)} of {len(mixed)} images and kept {fallback.model}'s cutout for "
        f"{len(switched)}; mean IoU of those: "
        + (f"{fmean(r.metrics.iou for r in switched):.3f}.\n" if switched else "none.\n")
    )
