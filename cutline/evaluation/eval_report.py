"""The evaluation report: figures per model, per category and overall, the confidence
calibration, plots (matplotlib) and the markdown a studio reads."""

from __future__ import annotations

import io
import statistics
from collections import Counter, defaultdict

from pydantic import BaseModel, Field

from cutline.base import storage
from cutline.base.naming import safe_component
from cutline.evaluation.calibration import Calibration, calibrate, roc_curve
from cutline.evaluation.eval_metrics import GOOD_IOU
from cutline.evaluation.evaluate import ImageEval

METRICS = ("iou", "mae", "sad", "gradient_error", "boundary_f")


class GroupFigures(BaseModel):
    """Means of every metric over a group of images (a category, or all)."""

    count: int
    good: int = Field(description=f"Cutouts with IoU >= {GOOD_IOU}.")
    means: dict[str, float]
    mean_confidence: float


class RefinementEffect(BaseModel):
    """Mean figures of a category without and with edge refinement, and its cost."""

    count: int
    without: dict[str, float]
    with_refinement: dict[str, float]
    median_ms: float


class ModelReport(BaseModel):
    """Everything measured for one model."""

    model: str
    overall: GroupFigures
    categories: dict[str, GroupFigures]
    lanes: dict[str, int] = Field(description="Lanes the rules would choose.")
    calibration: Calibration
    median_inference_seconds: float
    refinement: dict[str, RefinementEffect] = Field(
        default_factory=dict, description="Edge refinement's effect per category."
    )
    rules_fragment: str = ""


class EvalReport(BaseModel):
    """A whole evaluation run."""

    data: str
    target_precision: float
    models: list[ModelReport]
    images: list[ImageEval]
    plots: dict[str, str] = Field(default_factory=dict)


def _group(results: list[ImageEval]) -> GroupFigures:
    return GroupFigures(
        count=len(results),
        good=sum(r.good for r in results),
        means={
            m: round(statistics.fmean(getattr(r.metrics, m) for r in results), 4) for m in METRICS
        },
        mean_confidence=round(statistics.fmean(r.confidence for r in results), 4),
    )


def model_report(model: str, results: list[ImageEval], target_precision: float) -> ModelReport:
    """Figures of one model's results."""
    by_category: dict[str, list[ImageEval]] = defaultdict(list)
    for result in results:
        by_category[result.category].append(result)
    return ModelReport(
        model=model,
        overall=_group(results),
        categories={c: _group(rs) for c, rs in sorted(by_category.items())},
        lanes=dict(Counter(r.lane for r in results)),
        calibration=calibrate(
            [r.confidence for r in results], [r.good for r in results], target_precision
        ),
        median_inference_seconds=round(statistics.median(r.inference_seconds for r in results), 4),
        refinement={c: _refinement(rs) for c, rs in sorted(by_category.items())},
    )


def _refinement(results: list[ImageEval]) -> RefinementEffect:
    shown = ("iou", "mae", "gradient_error")
    return RefinementEffect(
        count=len(results),
        without={
            m: round(statistics.fmean(getattr(r.metrics, m) for r in results), 4) for m in shown
        },
        with_refinement={
            m: round(statistics.fmean(getattr(r.refined, m) for r in results), 4) for m in shown
        },
        median_ms=round(1000 * statistics.median(r.refine_seconds for r in results), 1),
    )


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def category_bars_png(report: EvalReport) -> bytes:
    """Mean IoU per category, one bar per model."""
    plt = _figure()
    categories = sorted({c for m in report.models for c in m.categories})
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(categories) + 2), 3.6), dpi=100)
    width = 0.8 / max(1, len(report.models))
    for i, model in enumerate(report.models):
        values = [
            model.categories[c].means["iou"] if c in model.categories else 0 for c in categories
        ]
        ax.bar([x + i * width for x in range(len(categories))], values, width, label=model.model)
    ax.axhline(GOOD_IOU, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks([x + width * (len(report.models) - 1) / 2 for x in range(len(categories))])
    ax.set_xticklabels(categories, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean IoU")
    ax.set_title("Cutout accuracy per category")
    ax.legend(fontsize=8)
    return _save(fig, plt)


def roc_png(report: EvalReport) -> bytes:
    """ROC of the confidence score for telling good cutouts from bad, one line per model."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=100)
    for model in report.models:
        results = [r for r in report.images if r.model == model.model]
        fpr, tpr = roc_curve([r.confidence for r in results], [r.good for r in results])
        auc = model.calibration.roc_auc
        ax.plot(
            fpr, tpr, marker=".", label=f"{model.model} (AUC {auc if auc is not None else 'n/a'})"
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("bad cutouts let into the auto lane (FPR)")
    ax.set_ylabel("good cutouts let into the auto lane (TPR)")
    ax.set_title("Confidence ROC")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, plt)


def precision_coverage_png(report: EvalReport) -> bytes:
    """Auto-lane precision against coverage of the good cutouts as the threshold moves."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=100)
    for model in report.models:
        curve = model.calibration.curve
        ax.plot(
            [p.coverage for p in curve], [p.precision for p in curve], marker=".", label=model.model
        )
    ax.axhline(report.target_precision, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("good cutouts reaching the auto lane (coverage)")
    ax.set_ylabel("auto-lane cutouts that are good (precision)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Auto lane: precision vs coverage")
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, plt)


def worst_png(report: EvalReport, count: int = 6) -> bytes:
    """The worst cutouts of each model (lowest IoU), mistakes painted on."""
    from PIL import Image

    plt = _figure()
    rows = len(report.models)
    fig, axes = plt.subplots(rows, count, figsize=(2.6 * count, 2.4 * rows), dpi=100, squeeze=False)
    for row, model in enumerate(report.models):
        worst = sorted(
            (r for r in report.images if r.model == model.model), key=lambda r: r.metrics.iou
        )[:count]
        for col in range(count):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(worst):
                r = worst[col]
                ax.imshow(Image.open(io.BytesIO(storage.read_bytes(r.overlay))))
                ax.set_title(
                    f"{model.model}\n{r.category} IoU {r.metrics.iou:.2f} conf {r.confidence:.2f}",
                    fontsize=7,
                )
    fig.suptitle("Worst cutouts (blue: subject missed, red: background kept)", fontsize=9)
    return _save(fig, plt)


def write_plots(report: EvalReport, out_dir: str) -> dict[str, str]:
    """Every plot as a PNG in ``out_dir``; name -> location."""
    made = {
        "categories": category_bars_png(report),
        "roc": roc_png(report),
        "precision_coverage": precision_coverage_png(report),
        "worst": worst_png(report),
    }
    return {
        name: storage.write_bytes(storage.join(out_dir, f"{name}.png"), data)
        for name, data in made.items()
    }


def report_markdown(report: EvalReport) -> str:
    """The report a studio reads: what was measured, per model and category, and what to
    route on."""
    lines = [
        "# Cutout evaluation",
        "",
        f"{len({r.name for r in report.images})} images from `{report.data}`; a cutout is good "
        f"when its IoU with the ground truth is at least {GOOD_IOU}. Target auto-lane precision "
        f"{report.target_precision:.0%}.",
        "",
        "| model | images | good | mean IoU | MAE | SAD (k) | grad (k) | boundary F | conf. ROC AUC | recommended threshold | auto precision | good kept | s / image (model) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report.models:
        rec = m.calibration.recommended
        o = m.overall
        lines.append(
            f"| {m.model} | {o.count} | {o.good} | {o.means['iou']:.3f} | {o.means['mae']:.4f} "
            f"| {o.means['sad']:.2f} | {o.means['gradient_error']:.2f} | {o.means['boundary_f']:.3f} "
            f"| {m.calibration.roc_auc if m.calibration.roc_auc is not None else 'n/a'} "
            f"| {rec.threshold if rec else 'none reaches the target'} "
            f"| {f'{rec.precision:.0%} (95% lower bound {rec.precision_lower_95:.0%})' if rec else '-'} "
            f"| {f'{rec.coverage:.0%}' if rec else '-'} | {m.median_inference_seconds:.3f} |"
        )
    for m in report.models:
        lines += [
            "",
            f"## {m.model}",
            "",
            "| category | images | good | mean IoU | MAE | boundary F | mean confidence |",
            "|---|---|---|---|---|---|---|",
            *[
                f"| {c} | {g.count} | {g.good} | {g.means['iou']:.3f} | {g.means['mae']:.4f} "
                f"| {g.means['boundary_f']:.3f} | {g.mean_confidence:.3f} |"
                for c, g in m.categories.items()
            ],
            "",
            "Lanes the rules would choose: "
            + ", ".join(f"{lane} {n}" for lane, n in sorted(m.lanes.items())),
        ]
        lines += [
            "",
            "Edge refinement (guided filter; `edge_refinement` in the rules), per category:",
            "",
            "| category | images | IoU without -> with | MAE without -> with | gradient error without -> with | ms / image |",
            "|---|---|---|---|---|---|",
            *[
                f"| {c} | {e.count} | {e.without['iou']:.3f} -> {e.with_refinement['iou']:.3f} "
                f"| {e.without['mae']:.4f} -> {e.with_refinement['mae']:.4f} "
                f"| {e.without['gradient_error']:.2f} -> {e.with_refinement['gradient_error']:.2f} "
                f"| {e.median_ms:.0f} |"
                for c, e in m.refinement.items()
            ],
        ]
        if m.rules_fragment:
            lines += ["", f"Rules fragment with the recommended threshold: `{m.rules_fragment}`"]
        lines += [
            "",
            "| threshold | auto | good in auto | precision | coverage |",
            "|---|---|---|---|---|",
            *[
                f"| {p.threshold} | {p.auto} | {p.good_in_auto} | {p.precision:.3f} | {p.coverage:.3f} |"
                for p in m.calibration.curve
            ],
        ]
    lines += ["", "## Plots", ""]
    lines += [
        f"![{name}]({storage.locate(uri).path.rsplit('/', 1)[-1]})"
        for name, uri in report.plots.items()
    ]
    lines += [
        "",
        "## Every image",
        "",
        "| model | image | category | IoU | MAE | boundary F | confidence | lane |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.model} | {r.name} | {r.category} | {r.metrics.iou:.3f} | {r.metrics.mae:.4f} "
        f"| {r.metrics.boundary_f:.3f} | {r.confidence:.3f} | {r.lane} |"
        for r in sorted(report.images, key=lambda r: (r.model, r.metrics.iou))
    ]
    return "\n".join(lines) + "\n"


def fragment_name(model: str) -> str:
    """File name of a model's rules fragment."""
    return f"confidence-{safe_component(model)}.yaml"
