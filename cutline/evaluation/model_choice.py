"""Which model each category's cutouts should use, learned from `cutline eval`'s figures.

No single model wins everywhere: on the development photos MODNet (portrait matting) cut hair
and plush far better than u2netp but lost fringed bags and yarn. `cutline eval` with several
models measures each on every reference image; a category switches from the run's model to
another only where that one's mean IoU is higher by ``MIN_GAIN`` on at least ``MIN_IMAGES`` of
its images (one lucky picture decides nothing). The shipped mixture (each category's chosen
model) is then calibrated as one: its confidence threshold is computed on the chosen model's
score of every image, so the auto lane's precision bound holds for what a shoot would run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import fmean

import yaml

from cutline.domain.manifest import clean_category
from cutline.evaluation.evaluate import ImageEval

MIN_IMAGES = 3
MIN_GAIN = 0.02


@dataclass(frozen=True)
class CategoryChoice:
    """The model chosen for one category, with the figures that chose it."""

    category: str  # as the rules name it
    model: str
    mean_iou: dict[str, float]  # per model
    images: int


def choose_models(results: list[ImageEval], default: str) -> dict[str, CategoryChoice]:
    """Per category, the model its images should use (``default`` unless another proved
    better); ``results`` holds every model's figures for the same images."""
    ious: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        ious[clean_category(result.category)][result.model].append(result.metrics.iou)
    choices = {}
    for category, per_model in sorted(ious.items()):
        means = {model: fmean(values) for model, values in per_model.items()}
        images = min(len(values) for values in per_model.values())
        best = max(means, key=lambda model: (means[model], model == default))
        gain = means[best] - means.get(default, 0.0)
        chosen = best if images >= MIN_IMAGES and gain >= MIN_GAIN else default
        choices[category] = CategoryChoice(category, chosen, means, images)
    return choices


def mixture(results: list[ImageEval], choices: dict[str, CategoryChoice]) -> list[ImageEval]:
    """The figures a shoot with these choices would produce: each image's chosen model's."""
    return [r for r in results if choices[clean_category(r.category)].model == r.model]


def models_fragment(choices: dict[str, CategoryChoice], default: str) -> str:
    """The choices as the `models:` part of a rules fragment (YAML); categories that keep the
    run's model are listed in the evidence only."""
    switched = {c.category: c.model for c in choices.values() if c.model != default}
    evidence = {
        c.category: {
            **{f"iou_{model}": round(iou, 4) for model, iou in sorted(c.mean_iou.items())},
            "images": c.images,
            "chosen": c.model,
        }
        for c in choices.values()
    }
    body = {"models": {"by_category": switched, "evidence": evidence}}
    return (
        f"# Model per category written by `cutline eval` (the run's model, {default}, "
        f"elsewhere):\n# a category switches where another model's mean IoU is at least "
        f"{MIN_GAIN} higher on {MIN_IMAGES}+ of its images.\n"
        + yaml.safe_dump(body, sort_keys=False)
    )


def choice_markdown(choices: dict[str, CategoryChoice], default: str) -> str:
    """The choices as a report section."""
    models = sorted({m for c in choices.values() for m in c.mean_iou})
    lines = [
        "## Model per category",
        "",
        f"A category switches from {default} where another model's mean IoU is at least "
        f"{MIN_GAIN} higher on {MIN_IMAGES} or more of its images.",
        "",
        "| category | images | " + " | ".join(f"IoU {m}" for m in models) + " | chosen |",
        "|---|---|" + "---|" * len(models) + "---|",
    ]
    for c in choices.values():
        cells = " | ".join(f"{c.mean_iou[m]:.3f}" if m in c.mean_iou else "" for m in models)
        lines.append(f"| {c.category} | {c.images} | {cells} | {c.model} |")
    return "\n".join(lines) + "\n"
