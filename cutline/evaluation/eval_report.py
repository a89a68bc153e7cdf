"""The evaluation report: figures per model, per category and overall, the confidence
calibration, plots (matplotlib) and the markdown a studio reads."""

from __future__ import annotations

import io
import statistics
from collections import Counter, defaultdict

from pydantic import BaseModel, Field

from cutline.base import storage
from cutline.base.naming import safe_component
from cutline.evaluation.calibration import (
    Calibration,
    ThresholdPoint,
    calibrate,
    precision_lower_bound,
    roc_auc,
    roc_curve,
)
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
    alternatives: dict[str, float] = Field(
        default_factory=dict,
        description="Mean IoU if the cutout shipped another mask it already computes.",
    )
    alternatives_good: dict[str, int] = Field(
        default_factory=dict, description="Good cutouts (IoU >= 0.90) with each alternative."
    )


class SignalSeparation(BaseModel):
    """One signal's ROC AUC over the images it was measured on."""

    images: int
    roc_auc: float | None


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
    as_routed: ThresholdPoint | None = Field(
        default=None,
        description="The auto lane the rules in force chose (their threshold and every other "
        "rule): its precision with the lower bound, and the coverage it costs.",
    )
    signal_auc: dict[str, SignalSeparation] = Field(
        default_factory=dict,
        description="How well each signal alone tells good cutouts from bad (ROC AUC).",
    )
    category_calibration: dict[str, Calibration] = Field(
        default_factory=dict,
        description="The threshold rule per category (where its images can prove the target).",
    )


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
            [r.confidence for r in results],
            [r.good for r in results],
            target_precision,
            subjects=[r.subject or r.name for r in results],
        ),
        as_routed=as_routed(results),
        signal_auc=signal_separation(results),
        category_calibration={
            c: calibrate(
                [r.confidence for r in rs],
                [r.good for r in rs],
                target_precision,
                subjects=[r.subject or r.name for r in rs],
            )
            for c, rs in sorted(by_category.items())
        },
        median_inference_seconds=round(statistics.median(r.inference_seconds for r in results), 4),
        refinement={c: _refinement(rs) for c, rs in sorted(by_category.items())},
    )


def signal_separation(results: list[ImageEval]) -> dict[str, SignalSeparation]:
    """Each signal's (and raw measurement's) ROC AUC for good vs bad cutouts, over the images
    that have it: the evidence for keeping a signal in the score."""
    names = sorted({k for r in results for k in r.signals})
    out = {}
    for name in names:
        have = [r for r in results if name in r.signals]
        auc = roc_auc([r.signals[name] for r in have], [r.good for r in have])
        out[name] = SignalSeparation(
            images=len(have), roc_auc=None if auc is None else round(auc, 4)
        )
    return out


def as_routed(results: list[ImageEval]) -> ThresholdPoint | None:
    """The auto lane as the rules in force routed it (threshold = the lowest auto score)."""
    auto = [r for r in results if r.lane == "auto"]
    total_good = sum(r.good for r in results)
    if not results:
        return None
    hits = sum(r.good for r in auto)
    return ThresholdPoint(
        threshold=round(min((r.confidence for r in auto), default=1.0), 4),
        auto=len(auto),
        good_in_auto=hits,
        precision=round(hits / len(auto), 4) if auto else 0.0,
        precision_lower_bound=round(precision_lower_bound(hits, len(auto)), 4),
        coverage=round(hits / total_good, 4) if total_good else 0.0,
        auto_share=round(len(auto) / len(results), 4),
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
        alternatives={
            name: round(statistics.fmean(r.alternatives[name].iou for r in results), 4)
            for name in _alternative_names(results)
        },
        alternatives_good={
            name: sum(r.alternatives[name].good for r in results)
            for name in _alternative_names(results)
        },
    )


def _alternative_names(results: list[ImageEval]) -> list[str]:
    """Alternatives measured on every image of the group."""
    names = {n for r in results for n in r.alternatives}
    return sorted(n for n in names if all(n in r.alternatives for r in results))


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
    bound = "one-sided 95% lower bound"
    for m in report.models:
        rec = m.calibration.recommended
        o = m.overall
        lines.append(
            f"| {m.model} | {o.count} | {o.good} | {o.means['iou']:.3f} | {o.means['mae']:.4f} "
            f"| {o.means['sad']:.2f} | {o.means['gradient_error']:.2f} | {o.means['boundary_f']:.3f} "
            f"| {m.calibration.roc_auc if m.calibration.roc_auc is not None else 'n/a'} "
            f"| {(str(rec.threshold) + ('' if m.calibration.proven else ' (not proven)')) if rec else 'none reaches the target'} "
            f"| {f'{rec.precision:.1%} ({bound} {rec.precision_lower_bound:.1%})' if rec else '-'} "
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
        lines += _alternative_lines(m)
        lines += _routing_lines(m)
        if m.rules_fragment:
            lines += ["", f"Rules fragment with the recommended threshold: `{m.rules_fragment}`"]
        lines += [
            "",
            "| threshold | auto | good in auto | precision | lower bound | coverage |",
            "|---|---|---|---|---|---|",
            *[
                f"| {p.threshold} | {p.auto} | {p.good_in_auto} | {p.precision:.3f} "
                f"| {p.precision_lower_bound:.3f} | {p.coverage:.3f} |"
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
    lines += edge_colour_lines(report)
    return "\n".join(lines) + "\n"


def _alternative_lines(m: ModelReport) -> list[str]:
    """Mean IoU (good cutouts) per category if the cutout shipped another mask it computes."""
    names = sorted({n for e in m.refinement.values() for n in e.alternatives})
    if not names:
        return []
    lines = [
        "",
        "Other masks the cutout already computes (mean IoU, good cutouts in brackets):",
        "",
        "| category | images | shipped | " + " | ".join(names) + " | edge refinement |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for category, e in m.refinement.items():
        good = m.categories[category].good
        cells = [
            f"{e.alternatives[n]:.3f} ({e.alternatives_good[n]})" if n in e.alternatives else "-"
            for n in names
        ]
        lines.append(
            f"| {category} | {e.count} | {e.without['iou']:.3f} ({good}) | "
            + " | ".join(cells)
            + f" | {e.with_refinement['iou']:.3f} |"
        )
    return lines


def _routing_lines(m: ModelReport) -> list[str]:
    """What the rules in force did, the threshold rule out of sample, and per category."""
    lines = ["", "### Routing", ""]
    routed = m.as_routed
    if routed is not None:
        lines.append(
            f"As routed by the rules in force: {routed.auto} of {m.overall.count} images in the "
            f"auto lane, {routed.good_in_auto} good: precision {routed.precision:.1%} "
            f"(one-sided 95% lower bound {routed.precision_lower_bound:.1%}), coverage "
            f"{routed.coverage:.1%} of the {m.overall.good} good cutouts."
        )
    cv = m.calibration.cross_validation
    if cv is not None:
        chosen = ", ".join("none" if t is None else f"{t:.4f}" for t in cv.thresholds)
        lines += [
            "",
            f"Threshold rule cross-validated by subject ({cv.subjects} subjects, {cv.folds} "
            f"folds; thresholds chosen without each fold: {chosen}): {cv.auto} images routed "
            f"to auto, {cv.good_in_auto} good: precision {cv.precision:.1%} (lower bound "
            f"{cv.precision_lower_bound:.1%}), coverage {cv.coverage:.1%}.",
        ]
    lines += [
        "",
        "Each signal alone (ROC AUC for good vs bad; the score combines them):",
        "",
        "| signal | images | ROC AUC |",
        "|---|---|---|",
        *[
            f"| {name} | {sep.images} | {sep.roc_auc if sep.roc_auc is not None else 'n/a'} |"
            for name, sep in m.signal_auc.items()
        ],
    ]
    lines += [
        "",
        "| category | images | good | ROC AUC | threshold | precision (lower bound) | coverage | proven |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for category, c in m.category_calibration.items():
        rec = c.recommended
        lines.append(
            f"| {category} | {c.images} | {c.good} | {c.roc_auc if c.roc_auc is not None else 'n/a'} "
            f"| {rec.threshold if rec else '-'} "
            f"| {f'{rec.precision:.1%} ({rec.precision_lower_bound:.1%})' if rec else '-'} "
            f"| {f'{rec.coverage:.1%}' if rec else '-'} | {'yes' if c.proven else 'no'} |"
        )
    return lines


def fragment_name(model: str) -> str:
    """File name of a model's rules fragment."""
    return f"confidence-{safe_component(model)}.yaml"


def edge_colour_lines(report: EvalReport) -> list[str]:
    """Per model and category, the soft edge's colour error of the photo's colours and of
    the decontaminated ones, where the set has true foreground colours (the calibration
    set's composites); decontamination is worth switching on only where it is lower."""
    groups: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for image in report.images:
        if image.edge_colour:
            groups[(image.model, image.category)].append(image.edge_colour)
    if not groups:
        return []
    lines = [
        "",
        "## Edge colours (colour decontamination)",
        "",
        "Mean colour error (0-255, weighted by how mixed each pixel is) in the true soft edge "
        "of images whose subject's true colours are known: the photo's own colours against "
        "those `edge_decontamination` would ship (estimated with the model's mask).",
        "",
        "| model | category | images | photo | decontaminated | switch on? |",
        "|---|---|---|---|---|---|",
    ]
    for (model, category), errors in sorted(groups.items()):
        photo = sum(e["photo"] for e in errors) / len(errors)
        cleaned = sum(e["decontaminated"] for e in errors) / len(errors)
        lines.append(
            f"| {model} | {category} | {len(errors)} | {photo:.1f} | {cleaned:.1f} "
            f"| {'yes' if cleaned < photo else 'no'} |"
        )
    return lines
