"""`cutline eval` chooses a model per category only where one proved better on enough images."""

from __future__ import annotations

import yaml

from cutline.evaluation.eval_metrics import MatteMetrics
from cutline.evaluation.evaluate import ImageEval
from cutline.evaluation.model_choice import (
    MIN_IMAGES,
    FallbackChoice,
    choose_models,
    fallback_markdown,
    mixture,
    models_fragment,
)


def _result(category: str, model: str, name: str, iou: float, confidence: float = 0.5) -> ImageEval:
    metrics = MatteMetrics(iou=iou, mae=0.0, sad=0.0, gradient_error=0.0, boundary_f=1.0)
    return ImageEval.model_construct(
        name=name,
        category=category,
        model=model,
        metrics=metrics,
        confidence=confidence,
        signals={},
        cut_by="",
    )


def _figures(category: str, count: int, ious: dict[str, float]) -> list[ImageEval]:
    return [
        _result(category, model, f"{category}-{n}", iou)
        for n in range(count)
        for model, iou in ious.items()
    ]


def test_a_category_switches_only_where_another_model_is_better_on_enough_images():
    results = [
        *_figures("hair_fur", MIN_IMAGES, {"u2netp": 0.88, "modnet": 0.98}),  # switches
        *_figures("apparel", 6, {"u2netp": 0.91, "modnet": 0.78}),  # stays
        *_figures("jewellery", MIN_IMAGES - 1, {"u2netp": 0.64, "modnet": 0.91}),  # too few
        *_figures("shoes", 5, {"u2netp": 0.960, "modnet": 0.970}),  # gain under 0.02
    ]
    choices = choose_models(results, "u2netp")
    assert {c: choice.model for c, choice in choices.items()} == {
        "hair_fur": "modnet",
        "apparel": "u2netp",
        "jewellery": "u2netp",
        "shoes": "u2netp",
    }
    shipped = mixture(results, choices)
    assert len(shipped) == len(results) // 2  # one result per image: the chosen model's
    assert {(r.category, r.model) for r in shipped if r.category == "hair_fur"} == {
        ("hair_fur", "modnet")
    }
    fragment = yaml.safe_load(models_fragment(choices, "u2netp"))
    assert fragment["models"]["by_category"] == {"hair_fur": "modnet"}
    evidence = fragment["models"]["evidence"]["jewellery"]
    assert evidence["images"] == MIN_IMAGES - 1 and evidence["chosen"] == "u2netp"


def test_the_fallback_model_is_kept_only_where_the_first_was_in_doubt_and_it_scored_higher():
    results = [
        _result("toys", "u2netp", "sure", 0.95, confidence=0.9),  # not in doubt: kept
        _result("toys", "modnet", "sure", 0.99, confidence=0.95),
        _result("toys", "u2netp", "teddy", 0.53, confidence=0.17),  # in doubt, modnet better
        _result("toys", "modnet", "teddy", 0.99, confidence=0.80),
        _result("toys", "u2netp", "yarn", 0.80, confidence=0.30),  # in doubt, modnet worse
        _result("toys", "modnet", "yarn", 0.33, confidence=0.10),
    ]
    choices = choose_models(results, "u2netp")
    fallback = FallbackChoice("modnet", 0.384)
    shipped = {r.name: r for r in mixture(results, choices, fallback)}
    assert {name: r.cut_by for name, r in shipped.items()} == {
        "sure": "u2netp",
        "teddy": "modnet",
        "yarn": "u2netp",
    }
    assert shipped["teddy"].signals == {"first_model_score": 0.17, "fallback_model_score": 0.80}
    assert "first_model_score" not in shipped["sure"].signals  # the fallback never ran there
    fragment = yaml.safe_load(models_fragment(choices, "u2netp", fallback))
    assert fragment["models"]["fallback"] == {"model": "modnet", "below": 0.384}
    section = fallback_markdown(fallback, list(shipped.values()), "u2netp")
    assert "run on 2 of 3 images and kept modnet's cutout for 1" in section


def test_a_category_does_not_switch_on_one_subject_or_when_its_worst_subject_gets_worse():
    def shots(category: str, subject: str, count: int, ious: dict[str, float]):
        return [
            _result(category, model, f"{subject}-{n}", iou).model_copy(update={"subject": subject})
            for n in range(count)
            for model, iou in ious.items()
        ]

    results = [
        # many shots of one easy subject: proves nothing about the next subject
        *shots("jewellery", "ring", 9, {"u2netp": 0.88, "modnet": 0.92}),
        # better on average and on most subjects, but the yarn gets much worse
        *shots("fabric", "shirt", 4, {"u2netp": 0.90, "modnet": 0.99}),
        *shots("fabric", "scarf", 4, {"u2netp": 0.90, "modnet": 0.99}),
        *shots("fabric", "yarn", 4, {"u2netp": 0.80, "modnet": 0.75}),
        # better on every subject
        *shots("hair", "doll", 4, {"u2netp": 0.85, "modnet": 0.98}),
        *shots("hair", "teddy", 4, {"u2netp": 0.53, "modnet": 0.99}),
    ]
    choices = choose_models(results, "u2netp")
    assert {c: choice.model for c, choice in choices.items()} == {
        "jewellery": "u2netp",
        "fabric": "u2netp",
        "hair": "modnet",
    }
    assert choices["fabric"].subjects_won == {"u2netp": 1, "modnet": 2}
    assert choices["fabric"].worst_subject == {"u2netp": 0.80, "modnet": 0.75}
    assert choices["jewellery"].subjects == 1


def test_a_category_switch_must_beat_the_first_model_with_its_fallback():
    """Where the fallback already fixes the first model's doubtful cutouts, switching the
    whole category to the other model gains too little to pay for running it on every image."""

    def shot(subject: str, n: int, model: str, iou: float, confidence: float) -> ImageEval:
        return _result("apparel", model, f"{subject}-{n}", iou, confidence).model_copy(
            update={"subject": subject}
        )

    results = []
    for subject in ("shirt", "scarf", "coat"):
        for n in range(4):
            doubtful = n == 0  # one shot per subject the first model is unsure of, and wrong
            results += [
                shot(subject, n, "u2netp", 0.80 if doubtful else 0.97, 0.2 if doubtful else 0.9),
                shot(subject, n, "modnet", 0.98, 0.9),
            ]
    alone = choose_models(results, "u2netp")
    assert alone["apparel"].model == "modnet"  # +0.045 over u2netp alone, on every subject
    shipped = choose_models(results, "u2netp", FallbackChoice("modnet", 0.384))
    assert shipped["apparel"].model == "u2netp"  # +0.01 over u2netp with the fallback
    assert abs(shipped["apparel"].mean_iou["u2netp"] - 0.9725) < 1e-9
