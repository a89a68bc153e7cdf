"""`cutline eval` chooses a model per category only where one proved better on enough images."""

from __future__ import annotations

import yaml

from cutline.evaluation.eval_metrics import MatteMetrics
from cutline.evaluation.evaluate import ImageEval
from cutline.evaluation.model_choice import MIN_IMAGES, choose_models, mixture, models_fragment


def _result(category: str, model: str, name: str, iou: float) -> ImageEval:
    metrics = MatteMetrics(iou=iou, mae=0.0, sad=0.0, gradient_error=0.0, boundary_f=1.0)
    return ImageEval.model_construct(
        name=name, category=category, model=model, metrics=metrics, confidence=0.5
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
