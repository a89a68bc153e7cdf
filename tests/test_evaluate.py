"""`cutline eval` on a small set made here: two models compared in one Prefect flow run,
per-image and per-category figures, calibration, plots, and a rules fragment routing reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cutline.imaging.samples import DEFAULT_SAMPLES, render_sample_with_mask

pytestmark = pytest.mark.slow


def _eval_set(folder: Path) -> int:
    """Products on a studio sweep (easy) and on busy noise (hard for a colour threshold)."""
    (folder / "images").mkdir(parents=True)
    (folder / "truth").mkdir()
    rows = ["image,alpha,category,notes,foreground"]
    rng = np.random.default_rng(7)
    for index in range(6):
        sample = DEFAULT_SAMPLES[index % 2]
        image, alpha = render_sample_with_mask(sample, (320, 240), seed=index)
        category, foreground = "homeware", ""
        if index >= 4:  # paste the product onto a busy background
            noise = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
            noise.paste(image, (0, 0), alpha)
            image.save(folder / "truth" / f"p{index}-colours.png")  # what was pasted: F
            foreground = f"truth/p{index}-colours.png"
            image, category = noise, "busy_background"
        image.save(folder / "images" / f"p{index}.jpg", quality=92)
        alpha.save(folder / "truth" / f"p{index}.png")
        rows.append(
            f"images/p{index}.jpg,truth/p{index}.png,{category},made by the test,{foreground}"
        )
    (folder / "index.csv").write_text("\n".join(rows) + "\n")
    return 6


def test_eval_compares_models_and_writes_a_report_and_a_usable_rules_fragment(
    prefect_server, model_home, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from rules.engine import load_rules

    count = _eval_set(tmp_path / "set")
    out = tmp_path / "report"
    command = [sys.executable, "-m", "cutline", "eval", str(tmp_path / "set"), "--out", str(out)]
    command += ["--model", "u2netp", "--model", "bench-threshold-not-ai"]
    run = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "u2netp: 6 images, mean IoU" in run.stdout and "report:" in run.stdout

    report = json.loads((out / "report.json").read_text())
    assert [m["model"] for m in report["models"]] == ["u2netp", "bench-threshold-not-ai"]
    assert len(report["images"]) == 2 * count
    for image in report["images"]:
        assert set(image["metrics"]) == {"iou", "mae", "sad", "gradient_error", "boundary_f"}
        assert 0 <= image["confidence"] <= 1 and image["lane"] in {"auto", "review"}
        assert "view_agreement" in image["signals"] and Path(image["overlay"]).is_file()
        assert "edge_agreement" in image["signals"]  # the outline of the two views compared
        # what shipping another mask the cutout computes would give, measured, not guessed
        assert set(image["alternatives"]) == {"second view", "mean of both views"}
    u2netp = report["models"][0]
    assert set(u2netp["categories"]) == {"homeware", "busy_background"}
    assert u2netp["categories"]["homeware"]["count"] == 4
    assert u2netp["categories"]["homeware"]["means"]["iou"] > 0.9  # the real model cuts these
    assert u2netp["calibration"]["curve"] and u2netp["median_inference_seconds"] > 0
    effect = u2netp["refinement"]["homeware"]  # edge refinement measured, not guessed
    assert effect["count"] == 4 and effect["median_ms"] > 0
    assert set(effect["with_refinement"]) == {"iou", "mae", "gradient_error"}
    assert "Edge refinement (guided filter" in (out / "report.md").read_text()
    for name in ("categories", "roc", "precision_coverage", "worst"):
        assert Image.open(out / f"{name}.png").format == "PNG"
    markdown = (out / "report.md").read_text()
    assert "| u2netp | 6 |" in markdown and "## bench-threshold-not-ai" in markdown
    # What the rules in force did, with the bound six images can give, and each signal's AUC.
    u2_images = [i for i in report["images"] if i["model"] == "u2netp"]
    routed = u2netp["as_routed"]
    assert routed["auto"] == sum(i["lane"] == "auto" for i in u2_images)
    assert routed["precision_lower_bound"] < 0.7  # six images cannot promise much
    assert "as the rules in force route it" in run.stdout
    assert {"view_agreement", "edge_agreement"} <= set(u2netp["signal_auc"])
    assert "Each signal alone" in markdown and "As routed by the rules in force" in markdown
    assert "Other masks the cutout already computes" in markdown
    assert set(u2netp["refinement"]["homeware"]["alternatives"]) == {
        "second view",
        "mean of both views",
    }

    fragments = [m["rules_fragment"] for m in report["models"] if m["rules_fragment"]]
    assert fragments, "the real model's easy cutouts should give a threshold"
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f'version: "eval"\ninclude: ["{fragments[0]}"]\nconfidence: {{review_below: 0.1}}\n'
    )
    loaded = load_rules(rules)
    recommended = next(m for m in report["models"] if m["rules_fragment"] == fragments[0])
    assert loaded.confidence.review_below == recommended["calibration"]["recommended"]["threshold"]
    assert loaded.confidence.calibration["images"] == count
    assert loaded.confidence.calibration["proven"] is False  # six images prove no 98%
    assert "NOT PROVEN" in Path(fragments[0]).read_text()

    # Edge colours where the set knows the subject's colours (the two pasted products).
    coloured = [i for i in report["images"] if i["edge_colour"]]
    assert {i["category"] for i in coloured} == {"busy_background"}
    assert all(set(i["edge_colour"]) == {"photo", "decontaminated"} for i in coloured)
    assert "## Edge colours (colour decontamination)" in markdown
    assert "| u2netp | busy_background | 2 |" in markdown

    # The model per category: u2netp stays everywhere (better on homeware; two busy images
    # are too few to switch on); the second model is the fallback of cutouts under u2netp's
    # own threshold; the fragment with the mixture's threshold is a valid include.
    assert "## Model per category" in markdown and "| homeware | 4 |" in markdown
    assert "Fallback: a cutout scoring under" in markdown
    rules.write_text(f'version: "eval"\ninclude: ["{out / "models.yaml"}"]\n')
    loaded = load_rules(rules)
    assert loaded.models.by_category == {}
    assert loaded.models.evidence["homeware"]["chosen"] == "u2netp"
    assert loaded.models.fallback.model == "bench-threshold-not-ai"
    assert loaded.models.fallback.below == u2netp["calibration"]["recommended"]["threshold"]
    assert loaded.confidence.calibration["model"] == "u2netp + bench-threshold-not-ai"

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["evaluate-cutouts"]))
        )
        assert runs and runs[0].state.is_completed()
        tasks = client.read_task_runs(flow_run_filter=None)
    assert sum(1 for t in tasks if t.name.startswith("evaluate-image")) >= 2 * count


def test_eval_and_a_shoot_give_the_same_confidence_and_lane(
    prefect_server, model_home, tmp_path, override_settings
):
    """Eval measures what production does: the same images through `evaluate-cutouts` and
    through a shoot (with edge refinement switched on for one category) score alike."""
    from cutline.records.ledger import read_ledger
    from flows.evaluate_cutouts import evaluate_cutouts
    from flows.process_shoot import process_shoot

    count = _eval_set(tmp_path / "set")
    shipped = Path(__file__).resolve().parent.parent / "rules"
    shutil.copytree(shipped, tmp_path / "rules")  # the shipped rules, calibration included
    rules = tmp_path / "rules" / "default.yaml"
    with rules.open("a") as fh:
        fh.write("\nedge_refinement: {method: guided-filter, categories: [busy_background]}\n")
    override_settings(rules_file=str(rules))
    report = evaluate_cutouts(data=str(tmp_path / "set"), out=str(tmp_path / "report"))
    by_eval = {Path(image.name).name: image for image in report.images}
    assert len(by_eval) == count

    shoot = tmp_path / "set" / "images"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "filename,category\n"
        + "".join(f"{name},{image.category}\n" for name, image in by_eval.items())
    )
    summary = process_shoot(
        shoot=str(shoot), job_id="PARITY-1", manifest=str(manifest), output_root=str(tmp_path / "o")
    )
    rows = {row["source_name"]: row for row in read_ledger(summary.ledger)}
    assert set(rows) == set(by_eval)
    for name, image in by_eval.items():
        assert abs(float(rows[name]["confidence"]) - image.confidence) <= 0.001, name
        assert rows[name]["lane"] == image.lane and rows[name]["rules"].split(";") == image.rules
        assert rows[name]["refinement"] == image.refinement
    assert {image.refinement for image in by_eval.values()} == {"", "guided-filter"}
