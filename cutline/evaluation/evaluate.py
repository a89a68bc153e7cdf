"""What `cutline eval` records per image: the shoot's own cutout, score and lane compared with
the ground truth (the evaluation itself runs the production stages: `tasks.evaluate`)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from cutline.evaluation.eval_metrics import MatteMetrics
from cutline.imaging.codec import mask_to_png_bytes

OVERLAY_SIDE = 480


class ImageEval(BaseModel):
    """One image's figures for one model."""

    name: str
    category: str
    subject: str = Field(default="", description="What the image shows (index.csv's subject).")
    model: str = Field(description="The model evaluated, or the name of the rules' mixture.")
    cut_by: str = Field(
        default="", description="The model whose mask the image got (differs within a mixture)."
    )
    metrics: MatteMetrics
    good: bool = Field(description="IoU >= 0.90.")
    confidence: float
    signals: dict[str, float]
    lane: str = Field(description="The lane the rules would choose for this image.")
    rules: list[str]
    inference_seconds: float = Field(
        description="The cutout stage's time: decode, both views' inference, upscale, mask PNG."
    )
    refinement: str = Field(default="", description="Edge refinement the rules applied ('' none).")
    refined: MatteMetrics = Field(
        description=(
            "The same figures with edge refinement: the shipped mask itself where the rules "
            "refine this category, else the shipped mask refined once more (what switching "
            "refinement on for the category would do)."
        )
    )
    refine_seconds: float = Field(description="Time of the edge refinement.")
    alternatives: dict[str, MatteMetrics] = Field(
        default_factory=dict,
        description="The same figures for masks the cutout could ship instead, from views it "
        "already computes: the second (padded) view alone, the mean of both views.",
    )
    edge_colour: dict[str, float] = Field(
        default_factory=dict,
        description="Where the set has the subject's true colours: the mean colour error (0-255) "
        "in the true soft edge of the photo's colours ('photo') and of the decontaminated ones "
        "('decontaminated').",
    )
    overlay: str = Field(description="PNG: missed subject in blue, extra background in red.")


def overlay_png(rgb: Image.Image, pred: np.ndarray, truth: np.ndarray) -> bytes:
    """The image with the cutout's mistakes painted on: blue where subject was missed, red
    where background was kept."""
    small = rgb.copy()
    small.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))
    size = small.size

    def resized(alpha: np.ndarray) -> np.ndarray:
        img = Image.fromarray((alpha * 255).astype(np.uint8), mode="L").resize(size)
        return np.asarray(img) >= 128

    p, t = resized(pred), resized(truth)
    out = np.asarray(small, dtype=np.float32).copy()
    for wrong, colour in ((t & ~p, (40, 90, 255)), (p & ~t, (255, 40, 40))):
        out[wrong] = 0.45 * out[wrong] + 0.55 * np.array(colour, dtype=np.float32)
    return mask_to_png_bytes(Image.fromarray(out.astype(np.uint8)), 1)
