"""process-shoot end to end on a real Prefect server with the real u2netp model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cutline.base.settings import PROJECT_ROOT
from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.records.ledger import read_ledger
from dam_adapters import ApprovalState
from dam_adapters.local_catalog import LocalCatalog
from tests.scenario import run_steps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shoot(tmp_path_factory) -> Path:
    """The sample shoot plus a damaged file, an unlisted image in a sub-folder and a sidecar."""
    folder = tmp_path_factory.mktemp("shoot")
    write_sample_shoot(folder, size=(640, 480))
    (folder / "broken.jpg").write_bytes(b"this is not a photo")
    (folder / "day 2").mkdir()
    Image.open(folder / "SKU-1002_front.jpg").save(folder / "day 2" / "ZZ-9_side.jpg")
    (folder / "notes.txt").write_text("lighting notes")
    return folder


@pytest.fixture(scope="module")
def first_run(shoot: Path, prefect_server, model_home, tmp_path_factory):
    from flows.process_shoot import process_shoot

    out = tmp_path_factory.mktemp("out")
    summary = process_shoot(
        shoot=str(shoot),
        job_id="E2E-0001",
        manifest=str(shoot / "manifest.csv"),
        output_root=str(out),
    )
    return summary, {row["source_name"]: row for row in read_ledger(summary.ledger)}


def test_ledger_accounts_for_every_input_exactly_once(first_run, shoot: Path):
    summary, rows = first_run
    images = sorted(
        str(p.relative_to(shoot)).replace(os.sep, "/")
        for p in shoot.rglob("*")
        if p.is_file() and p.suffix not in {".csv", ".txt"}
    )
    assert sorted(rows) == images
    assert all(
        row["lane"] in {"auto", "review", "failed"} and row["reasons"] for row in rows.values()
    )
    assert sum(summary.lanes.values()) == len(images) == summary.total
    assert summary.ignored_files == [str(shoot / "notes.txt")]


def test_always_review_category_goes_to_review_with_its_reason_and_psd(first_run):
    _, rows = first_run
    glass = rows["SKU-2001_front.jpg"]
    assert glass["lane"] == "review", glass["error"]
    assert "category:glassware" in glass["rules"].split(";")
    assert "Glassware" in glass["reasons"]
    assert Path(glass["mask"]).is_file() and Path(glass["psd"]).is_file()
    assert glass["png"] == "" and glass["jpg"] == "" and glass["dam_id"] == ""


def test_damaged_file_fails_alone_with_a_reason(first_run):
    _, rows = first_run
    broken = rows["broken.jpg"]
    assert broken["lane"] == "failed"
    assert "not a readable image" in broken["error"]
    assert broken["mask"] == ""


def test_auto_images_have_all_renditions_and_are_in_the_catalog(first_run, settings):
    _, rows = first_run
    catalog = LocalCatalog(settings.resolved_catalog_dir)
    auto = {name: row for name, row in rows.items() if row["lane"] == "auto"}
    assert {"SKU-1001_front.jpg", "SKU-1002_front.jpg", "SKU-1003_front.jpg"} <= set(auto)
    for name, row in auto.items():
        png = Image.open(row["png"])
        assert png.mode == "RGBA" and png.size == (int(row["width"]), int(row["height"]))
        assert Path(row["psd"]).is_file() and Path(row["mask"]).is_file()
        assert len(row["jpg"].split(";")) == len(row["channels"].split(";"))
        record = catalog.get(row["dam_id"])
        assert record.job_id == "E2E-0001" and record.sku == row["sku"], name
        assert record.channels == row["channels"].split(";")
        assert record.approval_state == ApprovalState.AUTO_APPROVED
        assert record.content_hash == row["sha256"]
        assert {"png", "psd", "mask"} <= set(record.renditions)
    assert rows["SKU-1001_front.jpg"]["category"] == "footwear"
    assert auto["SKU-1001_front.jpg"]["jpg"].count(".jpg") == 2  # web + marketplace


def test_unlisted_file_gets_a_sku_from_its_name(first_run):
    _, rows = first_run
    row = rows["day 2/ZZ-9_side.jpg"]
    assert row["sku"] == "ZZ-9" and row["image_id"] == "day_2__ZZ-9_side"
    assert row["lane"] in {"auto", "review"}


def test_run_is_recorded_on_the_prefect_server_with_a_summary_artifact(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async def fetch():
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["E2E-0001"]))
            )
            artifact = await client.read_latest_artifacts()
            return runs, artifact

    runs, artifacts = asyncio.run(fetch())
    assert runs and runs[0].state.is_completed()
    assert any(a.key == "shoot-e2e-0001" for a in artifacts)


def test_summary_gives_cost_per_lane_and_a_time_chart(first_run, settings):
    summary, rows = first_run
    cost = summary.cost
    assert cost is not None and cost.currency == settings.currency
    assert sum(lane.images for lane in cost.lanes.values()) == summary.total
    assert abs(sum(lane.machine for lane in cost.lanes.values()) - cost.machine_cost) < 0.01
    review = cost.lanes["review"]
    assert review.retouch == round(
        review.images * settings.review_seconds_per_image / 3600 * settings.retoucher_hourly_rate, 2
    )
    assert cost.cpu_seconds_by_stage["cutout"] > 0
    chart = Image.open(summary.time_chart)
    assert chart.format == "PNG" and chart.width > 300
    row = next(r for r in rows.values() if r["lane"] == "auto")
    assert {"ingest", "cutout", "score", "export", "register"} <= set(
        json.loads(row["cpu_seconds"])
    )
    assert json.loads(row["stage_seconds"])["cutout"] > 0


def test_status_reports_progress_and_stage_counts(first_run):
    from cutline.ops.status import shoot_status

    summary, _ = first_run
    status = shoot_status("E2E-0001")
    assert status is not None and status.state == "Completed"
    assert status.progress == 100.0 and status.images == summary.total
    assert status.batches is not None and status.batches >= 1
    cutout = next(s for s in status.stages if s.stage == "cutout-batch")
    assert cutout.completed == status.batches and cutout.waiting == 0 and cutout.images_waiting == 0


# Reruns of one job: each step reruns into the job the steps before it left, so they run as
# one scenario on a job of their own (the read-only tests above keep E2E-0001 as first run).
RERUN_JOB = "E2E-RERUN"


def _mtimes(rows: dict[str, dict[str, str]], column: str) -> dict[str, int]:
    return {name: Path(row[column]).stat().st_mtime_ns for name, row in rows.items() if row[column]}


def _run(shoot: Path, output_root: Path):
    from flows.process_shoot import process_shoot

    return process_shoot(
        shoot=str(shoot),
        job_id=RERUN_JOB,
        manifest=str(shoot / "manifest.csv"),
        output_root=str(output_root),
    )


def _rows_by_name(summary) -> dict[str, dict[str, str]]:
    return {row["source_name"]: row for row in read_ledger(summary.ledger)}


def _step_rerun_into_another_output_root_registers_without_duplicates(
    shoot, first, out, catalog, tmp_path, override_settings
):
    before = {r.dam_id: r.revision for r in catalog.list_job(RERUN_JOB)}
    again = _run(shoot, tmp_path / "elsewhere")
    after = {r.dam_id: r.revision for r in catalog.list_job(RERUN_JOB)}
    assert set(after) == set(before)  # same assets, never a duplicate
    # The catalog keeps its own copies of the renditions, so the records are unchanged and
    # re-registering them writes no new revision.
    assert after == before
    assert again.lanes == first.lanes


def _step_rerun_of_an_unchanged_shoot_reuses_all_work(
    shoot, first, out, catalog, tmp_path, override_settings
):
    rows = _rows_by_name(first)
    revisions = {r.dam_id: r.revision for r in catalog.list_job(RERUN_JOB)}
    masks, pngs, psds = _mtimes(rows, "mask"), _mtimes(rows, "png"), _mtimes(rows, "psd")
    rerun = _rows_by_name(_run(shoot, out))
    assert (
        _mtimes(rerun, "mask") == masks
        and _mtimes(rerun, "png") == pngs
        and _mtimes(rerun, "psd") == psds
    )
    assert {r.dam_id: r.revision for r in catalog.list_job(RERUN_JOB)} == revisions
    for name, row in rows.items():
        for column in ("lane", "confidence", "png", "psd", "jpg", "dam_id", "sha256"):
            assert rerun[name][column] == row[column], (name, column)


def _step_changed_rules_reroute_without_recomputing_cutouts(
    shoot, first, out, catalog, tmp_path, override_settings
):
    rows = _rows_by_name(first)
    strict = tmp_path / "strict.yaml"
    # The same models as the shipped rules (a change of model or fallback does cut again).
    shipped = yaml.safe_load((PROJECT_ROOT / "rules/calibration/models.yaml").read_text())
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"models": shipped["models"]}))
    strict.write_text(
        'version: "strict"\ninclude: [models.yaml]\nconfidence: {review_below: 0.5}\n'
        "review_campaigns: [{name: SS27, reason: Every SS27 image is checked.}]\n"
    )
    override_settings(rules_file=str(strict))
    masks = _mtimes(rows, "mask")
    rerun = _rows_by_name(_run(shoot, out))
    assert _mtimes(rerun, "mask") == masks  # no cutout recomputed
    in_manifest = {s.filename for s in DEFAULT_SAMPLES}
    assert {r["lane"] for n, r in rerun.items() if n in in_manifest} == {"review"}
    for name, row in rerun.items():
        assert row["confidence"] == rows[name]["confidence"]
        if name in in_manifest:
            assert "campaign:SS27" in row["rules"].split(";"), row


RERUN_STEPS = (
    _step_rerun_into_another_output_root_registers_without_duplicates,
    _step_rerun_of_an_unchanged_shoot_reuses_all_work,
    _step_changed_rules_reroute_without_recomputing_cutouts,
)


def test_reruns_reuse_work_never_duplicate_assets_and_follow_changed_rules(
    shoot, prefect_server, model_home, settings, tmp_path, override_settings
):
    out = tmp_path / "out"
    first = _run(shoot, out)
    catalog = LocalCatalog(settings.resolved_catalog_dir)
    run_steps(RERUN_STEPS, shoot, first, out, catalog, tmp_path, override_settings)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutline", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
        cwd=cwd,
    )


def test_cli_run_reports_a_missing_shoot_with_nonzero_exit(prefect_server, tmp_path):
    result = _cli("run", str(tmp_path / "nope"), "--job-id", "CLI-404")
    assert result.returncode == 2  # said at once, before any run is submitted
    assert "does not exist or is not a folder" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") <= 2
    assert "/runs/flow-run/" not in result.stdout
    debug = _cli("--debug", "run", str(tmp_path / "nope"), "--job-id", "CLI-404")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_cli_run_completes_with_failed_images_and_exit_zero(prefect_server, model_home, tmp_path):
    folder = tmp_path / "mini"
    write_sample_shoot(folder, DEFAULT_SAMPLES[:1], size=(320, 240))
    (folder / "zero.jpg").write_bytes(b"")
    result = _cli(
        "run", "mini", "--job-id", "CLI-0001", "--out", "out", cwd=tmp_path
    )  # relative paths
    assert result.returncode == 0, result.stderr
    assert "| failed | 1 |" in result.stdout
    assert "ledger: " in result.stdout
    rows = read_ledger(str(tmp_path / "out" / "CLI-0001" / "ledger.csv"))
    assert {r["source_name"]: r["lane"] for r in rows}["zero.jpg"] == "failed"
    shown = _cli("dam", "show", next(r["dam_id"] for r in rows if r["dam_id"]), "--json")
    assert shown.returncode == 0 and '"job_id": "CLI-0001"' in shown.stdout


def test_ctrl_c_on_cli_run_stops_the_shoot_and_the_same_command_finishes_it(
    prefect_server, model_home, tmp_path
):
    import signal
    import time

    from cutline.services.review_queue import read_run
    from tests.images import product_shoot

    names = product_shoot(tmp_path / "big", 16, size=(640, 480))
    command = [
        sys.executable,
        "-m",
        "cutline",
        "run",
        "big",
        "--job-id",
        "CLI-STOP",
        "--out",
        "out",
    ]
    cli = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen = ""
    while "CLI-STOP: Running" not in seen:  # _follow prints each state change
        line = cli.stdout.readline()
        assert line, f"cutline run ended early: {cli.wait()} {cli.stderr.read()}"
        seen += line
    run_id = seen.split("/runs/flow-run/", 1)[1].split()[0]
    sent = time.monotonic()
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=120)
    assert time.monotonic() - sent < 90
    assert cli.returncode == 130, out + err
    assert "stopping shoot CLI-STOP" in err and "run the same command again" in err
    assert "Traceback" not in err
    state = read_run(run_id).state
    assert state.is_cancelled(), state  # stopped, not left running on the server
    assert not (tmp_path / "out" / "CLI-STOP" / "summary.json").exists()

    again = _cli(*command[3:], cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = read_ledger(str(tmp_path / "out" / "CLI-STOP" / "ledger.csv"))
    assert sorted(r["source_name"] for r in rows) == names


def test_cli_demo_runs_a_sample_shoot_and_says_where_things_are(
    prefect_server, model_home, tmp_path
):
    result = _cli("demo", "--out", str(tmp_path / "demo-out"))
    assert result.returncode == 0, result.stderr
    assert "sample shoot written to" in result.stdout
    assert "| review | 1 |" in result.stdout and "glassware" in result.stdout
    assert "Prefect UI: http://127.0.0.1:" in result.stdout
    ledgers = list((tmp_path / "demo-out").glob("DEMO-*/ledger.csv"))
    assert len(ledgers) == 1 and len(read_ledger(str(ledgers[0]))) == len(DEFAULT_SAMPLES)


def _two_category_shoot(tmp_path: Path, override_settings, rules: str, job: str) -> dict:
    """A footwear (SKU-1001) and a homeware (SKU-1002) image shot under rules that route every
    cutout to the auto lane plus ``rules``; the ledger's rows by SKU."""
    from flows.process_shoot import process_shoot

    shoot = tmp_path / "shoot"
    write_sample_shoot(shoot, DEFAULT_SAMPLES[:2], size=(320, 240))
    path = tmp_path / "rules.yaml"
    path.write_text(f'version: "{job}"\nconfidence: {{review_below: 0.0}}\n' + rules)
    override_settings(rules_file=str(path))
    summary = process_shoot(
        shoot=str(shoot),
        job_id=job,
        manifest=str(shoot / "manifest.csv"),
        output_root=str(tmp_path / "out"),
    )
    return {r["sku"]: r for r in read_ledger(summary.ledger)}


def test_edge_refinement_switched_on_by_category_in_the_rules(
    prefect_server, model_home, tmp_path, override_settings
):
    rules = "edge_refinement: {method: guided-filter, categories: [homeware]}\n"
    rows = _two_category_shoot(tmp_path, override_settings, rules, "REFINE-1")
    assert rows["SKU-1002"]["refinement"] == "guided-filter"
    assert rows["SKU-1001"]["refinement"] == ""
    assert all(r["lane"] == "auto" and Path(r["mask"]).is_file() for r in rows.values())


def test_the_rules_choose_the_model_per_category(
    prefect_server, model_home, tmp_path, override_settings
):
    """A rules fragment from `cutline eval` names MODNet for one category: its images get
    MODNet's mask (the ledger and the PNG's XMP say which model), the others the run's model;
    a rerun with the other model for that category cuts it out again, not from the cache."""
    from cutline.imaging import model_store
    from cutline.imaging.segmenter import get_session, predict_alpha
    from flows.process_shoot import process_shoot

    model_store.fetch("modnet", model_home)  # what `cutline models fetch modnet` does
    shoot = tmp_path / "shoot"
    write_sample_shoot(shoot, DEFAULT_SAMPLES[:2], size=(320, 240))  # footwear, homeware
    rules = tmp_path / "rules.yaml"
    (tmp_path / "models.yaml").write_text("models: {by_category: {Homeware: modnet}}\n")
    rules.write_text('version: "models"\ninclude: [models.yaml]\nconfidence: {review_below: 0.0}\n')
    override_settings(rules_file=str(rules))

    def run():
        return process_shoot(
            shoot=str(shoot),
            job_id="MODELS-1",
            manifest=str(shoot / "manifest.csv"),
            output_root=str(tmp_path / "out"),
        )

    rows = {r["sku"]: r for r in read_ledger(run().ledger)}
    assert rows["SKU-1002"]["model"] == "modnet" and rows["SKU-1001"]["model"] == "u2netp"
    assert b"modnet" in Path(rows["SKU-1002"]["png"]).read_bytes()  # the XMP names the model
    source = Image.open(rows["SKU-1002"]["source"])
    shipped = np.asarray(Image.open(rows["SKU-1002"]["mask"]), dtype=np.float32) / 255
    off = {
        name: float(np.abs(predict_alpha(get_session(name, model_home), source) - shipped).mean())
        for name in ("modnet", "u2netp")
    }
    assert off["modnet"] < 0.01 and off["modnet"] < off["u2netp"] / 2, off

    (tmp_path / "models.yaml").write_text("models: {by_category: {}}\n")
    rules.write_text(rules.read_text().replace('"models"', '"models-2"'))
    rows = {r["sku"]: r for r in read_ledger(run().ledger)}
    assert rows["SKU-1002"]["model"] == "u2netp"
    assert "cutout" not in rows["SKU-1002"]["reused"] and "cutout" in rows["SKU-1001"]["reused"]


def test_a_doubtful_cutout_gets_a_second_opinion_from_the_fallback_model(
    prefect_server, model_home, tmp_path, override_settings
):
    """The rules name MODNet as the fallback of every cutout scoring under 1.01 (all of
    them): each image is cut by both models, the higher-scoring mask is shipped, the ledger
    names its model and keeps both scores. With the fallback off (below 0) a shoot cuts with
    the run's model alone and records no second opinion."""
    from cutline.imaging import model_store
    from cutline.imaging.segmenter import get_session, predict_alpha

    model_store.fetch("modnet", model_home)
    always = "models: {fallback: {model: modnet, below: 1.01}}\n"
    for sku, row in _two_category_shoot(tmp_path, override_settings, always, "FB-1").items():
        signals = json.loads(row["signals"])
        first, second = signals["first_model_score"], signals["fallback_model_score"]
        assert row["model"] == ("modnet" if second > first else "u2netp"), (sku, signals)
        source = Image.open(row["source"])
        shipped = np.asarray(Image.open(row["mask"]), dtype=np.float32) / 255
        off = {
            name: float(
                np.abs(predict_alpha(get_session(name, model_home), source) - shipped).mean()
            )
            for name in ("modnet", "u2netp")
        }
        assert min(off, key=off.get) == row["model"], (sku, off)  # the kept model's mask
        assert abs(float(row["confidence"]) - max(first, second)) < 0.1, (sku, row["confidence"])

    never = "models: {fallback: {model: modnet, below: 0.0}}\n"
    for sku, row in _two_category_shoot(tmp_path, override_settings, never, "FB-2").items():
        assert row["model"] == "u2netp", sku
        assert "first_model_score" not in json.loads(row["signals"]), sku


def test_decontaminated_edges_for_a_category_in_the_rules(
    prefect_server, model_home, tmp_path, override_settings
):
    """The rules switch colour decontamination on for one category: its PNG and the PSD's
    Cutout layer carry new colours in the soft edge only (the PSD's Original layer stays the
    photo); the other category's renditions keep the photo's colours."""
    from psd_tools import PSDImage

    from cutline.imaging.decontaminate import soft_band

    rules = "edge_decontamination: {categories: [Homeware]}\n"
    rows = _two_category_shoot(tmp_path, override_settings, rules, "DECON-1")
    for sku, changed in (("SKU-1002", True), ("SKU-1001", False)):
        row = rows[sku]
        photo = np.asarray(Image.open(row["source"]).convert("RGB"))
        png = np.asarray(Image.open(row["png"]))
        alpha = png[..., 3]
        band, solid = soft_band(alpha), alpha >= 253
        assert band.sum() > 50, sku  # the model's mask has a soft edge to work on
        moved = np.abs(png[..., :3].astype(int) - photo.astype(int)).max(axis=2) > 2
        assert bool(moved[band].any()) is changed, sku
        assert not moved[solid].any(), sku  # solid subject pixels are the photo's
        assert not moved[~band & ~solid & (alpha > 2)].any(), sku
        layers = {
            layer.name: np.asarray(layer.topil().convert("RGB"))
            for layer in PSDImage.open(row["psd"])
        }
        assert np.array_equal(layers["Original"], photo), sku
        assert bool(np.abs(layers["Cutout"].astype(int) - photo.astype(int)).max() > 2) is changed


def test_a_rerun_after_the_shoot_changed_makes_the_dam_match_it(
    prefect_server, model_home, tmp_path, override_settings, settings
):
    """A file deleted and a file replaced by a new version under the same name: the rerun
    withdraws the deleted image's asset and the superseded version (with the reason, kept in
    history), registers the new version, and leaves the unchanged image alone."""
    from cutline.imaging.samples import render_sample
    from flows.process_shoot import process_shoot

    shoot, out = tmp_path / "shoot", tmp_path / "out"
    kept, replaced, deleted = DEFAULT_SAMPLES[:3]
    write_sample_shoot(shoot, (kept, replaced, deleted), size=(320, 240))
    (shoot / "manifest.csv").unlink()  # SKUs from the file names; no always-review category
    rules = tmp_path / "rules.yaml"
    rules.write_text('version: "all-auto"\nconfidence: {review_below: 0.0}\n')
    override_settings(rules_file=str(rules), catalog_dir=str(tmp_path / "catalog"))
    catalog = LocalCatalog(tmp_path / "catalog")

    twin = "SKU-9001_front.jpg"  # identical bytes filed under a second SKU
    (shoot / twin).write_bytes((shoot / kept.filename).read_bytes())
    first = process_shoot(shoot=str(shoot), job_id="CHANGED-1", output_root=str(out))
    assert first.lanes["auto"] == 4 and first.withdrawn == []
    before = {r.source_name: r for r in catalog.list_job("CHANGED-1")}
    assert len({r.dam_id for r in before.values()}) == 4  # the twin is an asset of its own
    assert before[twin].sku == "SKU-9001" and before[kept.filename].sku == kept.sku

    (shoot / deleted.filename).unlink()
    render_sample(replaced, (320, 240), seed=99).save(shoot / replaced.filename, quality=80)
    again = process_shoot(shoot=str(shoot), job_id="CHANGED-1", output_root=str(out))

    records = catalog.list_job("CHANGED-1")
    by_state: dict[str, list] = {}
    for record in records:
        by_state.setdefault(record.approval_state.value, []).append(record)
    withdrawn = {r.dam_id: r for r in by_state["withdrawn"]}
    assert set(withdrawn) == {before[deleted.filename].dam_id, before[replaced.filename].dam_id}
    assert "is no longer in the shoot" in withdrawn[before[deleted.filename].dam_id].note
    assert "replaced by a new version" in withdrawn[before[replaced.filename].dam_id].note
    assert all(r.history[-1]["state"] == "withdrawn" for r in withdrawn.values())
    live = {r.source_name: r for r in by_state["auto-approved"]}
    assert set(live) == {kept.filename, replaced.filename, twin}
    assert live[kept.filename].revision == before[kept.filename].revision  # untouched
    assert live[replaced.filename].dam_id != before[replaced.filename].dam_id  # the new version
    rows = read_ledger(again.ledger)
    assert sorted(r["source_name"] for r in rows) == sorted(
        [kept.filename, replaced.filename, twin]
    )
    assert len(again.withdrawn) == 2
    # A third, unchanged run withdraws nothing more.
    third = process_shoot(shoot=str(shoot), job_id="CHANGED-1", output_root=str(out))
    assert third.withdrawn == []


def test_a_waiting_review_of_a_replaced_image_is_cancelled_on_rerun(
    prefect_server, model_home, tmp_path, settings
):
    """Approving the old version later would publish what the shoot no longer has: the rerun
    cancels its waiting review and the new version waits in a review of its own."""
    from cutline.imaging.samples import render_sample
    from cutline.services.review_queue import read_run
    from flows.process_shoot import process_shoot
    from tests.reviews import wait_for_reviews

    glass = next(s for s in DEFAULT_SAMPLES if s.category == "glassware")
    shoot, out = tmp_path / "shoot", tmp_path / "out"
    write_sample_shoot(shoot, (glass,), size=(320, 240))
    process_shoot(shoot=str(shoot), job_id="REPLACED-1", output_root=str(out))
    (old,) = wait_for_reviews(settings, "REPLACED-1", 1)

    render_sample(glass, (320, 240), seed=42).save(shoot / glass.filename, quality=80)
    process_shoot(shoot=str(shoot), job_id="REPLACED-1", output_root=str(out))
    assert read_run(old.run_id).state.is_cancelled()
    (new,) = wait_for_reviews(settings, "REPLACED-1", 1)
    assert new.run_id != old.run_id


RESTORE_RULES = (
    'version: "auto-but-glass"\nconfidence: {review_below: 0.0}\n'
    "review_categories: {glassware: {queue: senior, reason: Glass needs a person.}}\n"
)


def test_withdrawn_assets_come_back_with_their_files_and_an_emptied_shoot_withdraws_nothing(
    prefect_server, model_home, tmp_path, override_settings, settings
):
    """Issue 27 #3. A file removed (asset withdrawn) and put back is live again in the DAM,
    in its lane's state (auto-approved, or what its review decided), with "restored: ..." in
    its history, and the ledger agrees. A shoot folder with no images (a card not mounted),
    or one that lost most of the job's files at once, is refused before anything is
    rewritten or withdrawn, unless the run is told to allow it."""
    from flows.process_shoot import process_shoot
    from tests.images import product_shoot
    from tests.reviews import decide, ui_form, wait_for_reviews

    job, shoot, out, away = "RESTORE-1", tmp_path / "shoot", tmp_path / "out", tmp_path / "away"
    glass = next(s for s in DEFAULT_SAMPLES if s.category == "glassware")
    kept, removed = DEFAULT_SAMPLES[:2]
    write_sample_shoot(shoot, (kept, removed, glass), size=(320, 240))
    extra = product_shoot(shoot, 5)  # K-000..K-004, SKUs from their names
    rules = tmp_path / "rules.yaml"
    rules.write_text(RESTORE_RULES)
    override_settings(rules_file=str(rules), catalog_dir=str(tmp_path / "catalog"))
    catalog = LocalCatalog(tmp_path / "catalog")
    away.mkdir()

    def run(**options):
        return process_shoot(
            shoot=str(shoot), job_id=job, output_root=str(out), return_state=True, **options
        )

    def move(names, source, target):
        for name in names:
            (source / name).rename(target / name)

    def states() -> dict[str, str]:
        return {r.source_name: r.approval_state.value for r in catalog.list_job(job)}

    first = run()
    assert first.is_completed(), first
    (review,) = wait_for_reviews(settings, job, 1)
    assert decide(review.run_id, ui_form("approve", note="clean glass")).state.is_completed()
    live = states()
    assert live[glass.filename] == "approved" and live[kept.filename] == "auto-approved"
    assert len(live) == 8

    # Two files leave the shoot: their assets are withdrawn.
    move([removed.filename, glass.filename], shoot, away)
    assert run().is_completed()
    gone = states()
    assert gone[removed.filename] == gone[glass.filename] == "withdrawn"

    # They come back as they were: live again, in their lane's state; the ledger agrees.
    move([removed.filename, glass.filename], away, shoot)
    back = run()
    assert back.is_completed()
    assert states() == live
    rows = {r["source_name"]: r for r in read_ledger(back.result().ledger)}
    by_name = {r.source_name: r for r in catalog.list_job(job)}
    for name in (removed.filename, glass.filename):
        record = by_name[name]
        assert rows[name]["dam_id"] == record.dam_id, name
        assert record.history[-1]["note"] == f"restored: {name} is back in the shoot"
        assert record.history[-2]["state"] == "withdrawn"
    assert by_name[glass.filename].approved_by == "Ana Retoucher"
    assert rows[glass.filename]["review_state"] == "approved"
    assert back.result().withdrawn == []

    # The card is not mounted: an empty shoot folder. Refused, through the worker's door.
    ledger = (out / job / "ledger.csv").read_bytes()
    everything = sorted(p.name for p in shoot.iterdir())
    move(everything, shoot, away)
    result = subprocess.run(
        [sys.executable, "-m", "flows.process_shoot", str(shoot), job, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        timeout=600,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"The shoot folder {shoot} has no images, while job {job} has 8 assets" in result.stderr
    assert "is the card or share mounted? Nothing was withdrawn." in result.stderr
    assert states() == live and (out / job / "ledger.csv").read_bytes() == ledger

    # Two of the 8 files come back (a half-copied card): refused too, naming what is missing.
    move(["manifest.csv", removed.filename, glass.filename], away, shoot)
    partial = run()
    assert partial.is_failed()
    with pytest.raises(Exception, match="6 of the 8 assets job RESTORE-1 has in the DAM") as info:
        partial.result()
    assert "K-000_front.jpg" in str(info.value) and "--allow-bulk-withdrawal" in str(info.value)
    assert states() == live and (out / job / "ledger.csv").read_bytes() == ledger

    # Told to, the run withdraws the six; when they come back they are live again.
    allowed = run(allow_bulk_withdrawal=True)
    assert allowed.is_completed(), allowed
    assert sorted(n for n, s in states().items() if s == "withdrawn") == sorted(
        [kept.filename, *extra]
    )
    move([kept.filename, *extra], away, shoot)
    assert run().is_completed()
    assert states() == live


def test_a_finished_job_leaves_no_concurrency_limit_of_its_own(first_run):
    """Thousands of jobs would bury the model and DAM limits on the UI's Concurrency page."""
    from prefect.client.orchestration import get_client

    from cutline.services.job_lock import lock_name
    from cutline.services.limits import MODEL_LIMIT

    with get_client(sync_client=True) as client:
        names = {limit.name for limit in client.read_global_concurrency_limits(limit=200)}
    assert lock_name("E2E-0001") not in names, names
    assert MODEL_LIMIT in names  # the shared limits stay
