"""evaluate-cutouts: measure models and the confidence score on a studio's own reference
images (mapped over images), and recommend the threshold to route on."""

from __future__ import annotations

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from cutline.base import storage
from cutline.base.settings import get_settings
from cutline.domain.locations import check_location
from cutline.domain.manifest import clean_category
from cutline.evaluation.calibration import rules_fragment
from cutline.evaluation.eval_report import (
    EvalReport,
    ModelReport,
    fragment_name,
    model_report,
    report_markdown,
    write_plots,
)
from cutline.evaluation.eval_set import EvalCase, load_eval_set
from cutline.evaluation.evaluate import ImageEval
from cutline.evaluation.model_choice import (
    FallbackChoice,
    choice_markdown,
    choose_models,
    fallback_markdown,
    mixture,
    models_fragment,
)
from cutline.imaging import model_store
from cutline.imaging.confidence import CONFIDENCE_VERSION
from tasks.context import ShootContext
from tasks.evaluate import eval_context, evaluate_case


@task(name="evaluate-image", retries=1, retry_delay_seconds=5)
def evaluate_image(case: EvalCase, index: int, ctx: ShootContext, label: str = "") -> ImageEval:
    """One image with one model (or the rules' mixture, named ``label``) through the shoot's
    stages: metrics against the ground truth, confidence, lane."""
    return evaluate_case(case, index, ctx, label)


def _choose_models(
    models: list[str],
    results: list[ImageEval],
    reports: list[ModelReport],
    data: str,
    out: str,
    target_precision: float,
) -> str:
    """Choose a model per category and the second model as the fallback of doubtful cutouts
    (those under the first model's own recommended threshold), calibrate the mixture, write
    all as one rules fragment (``models.yaml``); return the report's section on it."""
    logger = get_run_logger()
    default = models[0]
    first = reports[0].calibration.recommended
    fallback = FallbackChoice(models[1], first.threshold) if first is not None else None
    choices = choose_models(results, default, fallback)
    mixed_images = mixture(results, choices, fallback)
    mixed = model_report("per-category models", mixed_images, target_precision)
    section = choice_markdown(choices, default, fallback) + fallback_markdown(
        fallback, mixed_images, default
    )
    switched = {c.category: c.model for c in choices.values() if c.model != default}
    if mixed.calibration.recommended is None:
        logger.warning("The per-category models reach no threshold at the target precision.")
        return section + "\nNo threshold reaches the target precision: no fragment written.\n"
    used = {*switched.values(), *([fallback.model] if fallback else [])}
    text = models_fragment(choices, default, fallback) + rules_fragment(
        mixed.calibration,
        model=" + ".join([default, *sorted(used)]),
        confidence_version=CONFIDENCE_VERSION,
        evaluated_on=data,
        by_category={clean_category(c): cal for c, cal in mixed.category_calibration.items()},
    )
    path = storage.write_bytes(storage.join(out, "models.yaml"), text.encode("utf-8"))
    logger.info(
        "per-category models %s, fallback %s: mean IoU %.3f, confidence ROC AUC %s, "
        "threshold %s; fragment %s",
        switched or "(none switched)",
        fallback,
        mixed.overall.means["iou"],
        mixed.calibration.roc_auc,
        mixed.calibration.recommended.threshold,
        path,
    )
    return section + (
        f"\nWith these choices: mean IoU {mixed.overall.means['iou']:.3f}, confidence ROC AUC "
        f"{mixed.calibration.roc_auc}, threshold {mixed.calibration.recommended.threshold} "
        f"(fragment `{path}`: include it from your rules).\n"
    )


@flow(
    name="evaluate-cutouts",
    task_runner=ThreadPoolTaskRunner(max_workers=get_settings().workers),
    log_prints=True,
)
def evaluate_cutouts(
    data: str,
    models: list[str] | None = None,
    out: str | None = None,
    target_precision: float = 0.98,
) -> EvalReport:
    """Measure cutout accuracy per category and the confidence score's calibration on a
    folder of reference images with ground truth, for one or more models.

    Args:
        data: Folder with images, ground-truth alpha mattes or masks and an index.csv
            (image, alpha, category; paths relative to the folder).
        models: rembg model names or ONNX paths to compare, each on every image (the
            second is also tried as the fallback of the first); empty means the rules as a
            shoot applies them: CUTLINE_MODEL with the rules' per-category models and fallback.
        out: Folder for the report (markdown, PNG plots, JSON, rules fragments); empty means
            <data root>/eval/<folder name>.
        target_precision: Share of auto-lane cutouts that must be good (IoU >= 0.90) at the
            recommended threshold.
    """
    logger = get_run_logger()
    settings = get_settings()
    check_location(data, "evaluation folder", settings)
    as_shipped = not models
    models = list(models or [settings.model])
    out = out or str(
        settings.data_root / "eval" / storage.locate(data).path.rstrip("/").rsplit("/", 1)[-1]
    )
    check_location(out, "report folder", settings)
    cases = load_eval_set(data)
    shipped = eval_context(models[0], data, out, settings, label=models[0]).rules.models_named()
    label = "+".join([models[0], *[m for m in shipped if m != models[0]]]) if as_shipped else ""
    for model in [*models, *(shipped if as_shipped else [])]:
        model_store.ensure(model_store.parse_model(model), settings.resolved_model_home)
    results: list[ImageEval] = []
    reports = []
    for model in models:
        ctx = eval_context(model, data, out, settings, label=label)
        futures = evaluate_image.map(cases, range(len(cases)), unmapped(ctx), unmapped(label))
        got = [f.result() for f in futures]
        results += got
        report = model_report(label or model, got, target_precision)
        if report.calibration.recommended is not None:
            text = rules_fragment(
                report.calibration,
                model=label or model,
                confidence_version=CONFIDENCE_VERSION,
                evaluated_on=data,
                by_category={
                    clean_category(c): cal for c, cal in report.category_calibration.items()
                },
            )
            report.rules_fragment = storage.write_bytes(
                storage.join(out, fragment_name(label or model)), text.encode("utf-8")
            )
        reports.append(report)
        logger.info(
            "%s: mean IoU %.3f, confidence ROC AUC %s, recommended threshold %s",
            label or model,
            report.overall.means["iou"],
            report.calibration.roc_auc,
            report.calibration.recommended.threshold if report.calibration.recommended else None,
        )
    report = EvalReport(
        data=data, target_precision=target_precision, models=reports, images=results
    )
    report.plots = write_plots(report, out)
    markdown = report_markdown(report)
    if len(models) > 1:
        markdown += "\n" + _choose_models(models, results, reports, data, out, target_precision)
    storage.write_bytes(storage.join(out, "report.md"), markdown.encode("utf-8"))
    storage.write_bytes(
        storage.join(out, "report.json"), report.model_dump_json(indent=2).encode("utf-8")
    )
    create_markdown_artifact(
        markdown=markdown, key="cutout-evaluation", description=f"Evaluation of {data}"
    )
    return report
