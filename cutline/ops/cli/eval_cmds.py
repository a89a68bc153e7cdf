"""`cutline eval`, `cutline calibration-set` and `cutline demo`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from cutline.base import storage
from cutline.base.errors import CutlineError
from cutline.base.settings import get_settings
from cutline.ops import stack
from cutline.ops.cli.app import (
    _fail,
    app,
)
from cutline.ops.cli.run_cmds import run_shoot
from cutline.ops.terminal import invoked_as


@app.command("eval")
def evaluate(
    data: Annotated[str, typer.Argument(help="Folder with images, ground truth and index.csv.")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Model name or ONNX path; repeat to compare several."),
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Report folder (default: <data root>/eval/<name>).")
    ] = None,
    target_precision: Annotated[
        float, typer.Option(help="Share of auto-lane cutouts that must be good.", min=0, max=1)
    ] = 0.98,
) -> None:
    """Measure models and the confidence score on your own images; recommend a threshold."""
    from flows.evaluate_cutouts import evaluate_cutouts

    try:
        with stack.using_stack(get_settings()):
            report = evaluate_cutouts(
                data=data, models=model or None, out=out, target_precision=target_precision
            )
    except CutlineError as exc:
        raise _fail(exc) from None
    for m in report.models:
        rec = m.calibration.recommended
        typer.echo(
            f"{m.model}: {m.overall.count} images, mean IoU {m.overall.means['iou']:.3f}, "
            f"confidence ROC AUC {m.calibration.roc_auc}, "
            + (
                f"recommended threshold {rec.threshold} -> auto precision {rec.precision:.1%} "
                f"(lower bound {rec.precision_lower_bound:.1%}"
                + ("" if m.calibration.proven else ", too few images to prove the target")
                + f"), {rec.coverage:.1%} of good cutouts kept; fragment {m.rules_fragment}"
                if rec
                else "no threshold reaches the target precision"
            )
        )
        routed = m.as_routed
        if routed is not None:
            typer.echo(
                f"  as the rules in force route it: {routed.auto} auto, precision "
                f"{routed.precision:.1%} (one-sided 95% lower bound "
                f"{routed.precision_lower_bound:.1%}), coverage {routed.coverage:.1%}"
            )
        cv = m.calibration.cross_validation
        if cv is not None:
            typer.echo(
                f"  threshold rule cross-validated over {cv.subjects} subjects: precision "
                f"{cv.precision:.1%} (lower bound {cv.precision_lower_bound:.1%}), "
                f"coverage {cv.coverage:.1%}"
            )
    report_dir = storage.parent(report.plots["roc"])
    typer.echo(f"report: {storage.join(report_dir, 'report.md')}")


@app.command("calibration-set")
def calibration_set(
    source: Annotated[
        str, typer.Argument(help="Evaluation set to build from (index.csv, images, alpha).")
    ],
    out: Annotated[Path, typer.Argument(help="Folder to write tune/ and holdout/ into.")],
    tune_variants: Annotated[
        int, typer.Option(help="Composites per subject in the tune part.", min=1)
    ] = 40,
    holdout_variants: Annotated[
        int, typer.Option(help="Composites per subject in the holdout part.", min=1)
    ] = 40,
) -> None:
    """Build the confidence calibration set: each soft-alpha subject re-lit on studio
    backdrops with exact ground truth, split by subject into tune/ and holdout/ (see
    docs/confidence.md). The same source and options always give the same files."""
    from cutline.evaluation.calibration_set import build_calibration_set

    try:
        counts = build_calibration_set(
            source, out, tune_variants=tune_variants, holdout_variants=holdout_variants
        )
    except CutlineError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"calibration set in {out}: tune {counts['tune']} images, holdout {counts['holdout']}; "
        f"`{invoked_as()} eval {out / 'tune'}` recommends a threshold, "
        f"`{invoked_as()} eval {out / 'holdout'}` measures the rules in force"
    )


@app.command()
def demo(
    out: Annotated[
        str | None, typer.Option(help="Output root (default: CUTLINE_OUTPUT_ROOT).")
    ] = None,
) -> None:
    """Make a small sample shoot by code, run it, and say where outputs and the UI are."""
    from cutline.imaging.samples import write_sample_shoot

    settings = get_settings()
    job_id = "DEMO-" + datetime.now().strftime("%Y%m%d-%H%M%S")
    shoot = settings.data_root / "demo" / job_id
    write_sample_shoot(shoot)  # with its manifest.csv, which the run picks up itself
    typer.echo(f"sample shoot written to {shoot}")
    try:
        code = run_shoot(str(shoot), job_id, None, out)
    except CutlineError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)
