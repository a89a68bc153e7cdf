"""A setting given to `cutline run` is honoured or refused, never silently dropped (issue 28).

The shoot runs in the stack's worker (or another host's), with that process's settings; the
shell that runs `cutline run` may say otherwise. Each class of setting is tried through the
CLI against the session's running stack: run options go with the run, host settings that
differ refuse the run, credentials stay on each side and are checked there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.records.ledger import read_ledger
from tests import s3server
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _cutline_run(shoot: str, job: str, out: str, *extra: str, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "cutline", "run", shoot, "--job-id", job, "--out", out, *extra],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run_parameters(job: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[job]))
        )
    return run.parameters


@pytest.fixture
def small_shoot(tmp_path) -> Path:
    write_sample_shoot(tmp_path / "shoot", DEFAULT_SAMPLES[:2], size=(320, 240))
    return tmp_path / "shoot"


def test_host_settings_that_differ_refuse_the_run_and_name_themselves(
    prefect_server, model_home, small_shoot, tmp_path
):
    out = tmp_path / "out"
    result = _cutline_run(
        str(small_shoot),
        "SET-HOST-1",
        str(out),
        CUTLINE_RESIDENCY="eu",
        CUTLINE_ALLOWED_ROOTS=json.dumps(["/mnt/studio-only"]),
        CUTLINE_DAM_ADAPTER="object-store",  # the DAM target is the host's
        CUTLINE_MODEL_HOME=str(tmp_path / "desk-models"),  # where the host keeps its models
    )
    assert result.returncode == 1, result.stdout + result.stderr
    said = result.stderr
    assert "CUTLINE_RESIDENCY=eu where the run was submitted, any on the host running it" in said
    assert 'CUTLINE_ALLOWED_ROOTS=["/mnt/studio-only"] where the run was submitted' in said
    assert "CUTLINE_DAM_ADAPTER=object-store where the run was submitted, local-catalog" in said
    assert f"CUTLINE_MODEL_HOME={tmp_path / 'desk-models'} where the run was submitted" in said
    assert "did not start" in said
    assert not out.exists(), "a refused run wrote nothing"
    # The expectations are visible on the run page: the run's parameters.
    expected = _run_parameters("SET-HOST-1")["options"]["host_settings"]
    assert expected["residency"] == "eu"
    assert expected["allowed_roots"] == ["/mnt/studio-only"]
    assert "s3_secret_access_key" not in expected and "s3_access_key_id" not in expected


def test_run_options_from_the_shell_and_the_command_line_go_with_the_run(
    prefect_server, model_home, small_shoot, tmp_path
):
    rules = yaml.safe_load(Path("rules/default.yaml").read_text(encoding="utf-8"))
    rules.pop("include", None)
    rules["version"] = "studio-test-7"
    rules["confidence"]["review_below"] = 0.0  # nothing goes to review by confidence
    rules_file = tmp_path / "studio-rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
    out = tmp_path / "out"

    result = _cutline_run(
        str(small_shoot), "SET-RUN-1", str(out), "--rules", str(rules_file), CUTLINE_BATCH_SIZE="1"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    # The rules file changes after submission: the run keeps the rules it was given.
    rules_file.write_text("version: broken\n", encoding="utf-8")
    config = json.loads((out / "SET-RUN-1" / "run-config.json").read_text(encoding="utf-8"))
    assert config["rules_fingerprint"].startswith("studio-test-7+")
    assert config["rules"]["version"] == "studio-test-7"
    assert config["rules_file"] == "run parameter"
    assert config["batch_size"] == 1
    assert len(list((out / "SET-RUN-1" / "batches").glob("*.json"))) == 2
    summary = json.loads((out / "SET-RUN-1" / "summary.json").read_text(encoding="utf-8"))
    assert summary["rules_version"] == config["rules_fingerprint"]
    rows = read_ledger(str(out / "SET-RUN-1" / "ledger.csv"))
    assert len(rows) == 2 and not any("confidence" in row["rules"] for row in rows)
    options = _run_parameters("SET-RUN-1")["options"]
    assert options["batch_size"] == 1 and "studio-test-7" in options["rules"]


def test_the_model_presets_and_output_root_the_shell_chooses_go_with_the_run(
    prefect_server, model_home, small_shoot, tmp_path
):
    """Issue 28 (1): the remaining run options, each from the door a producer uses: the
    model from the shell (CUTLINE_MODEL), channel presets from --presets (frozen by content:
    the file changes after submission, the run keeps what it was given), and the output
    root from CUTLINE_OUTPUT_ROOT without --out."""
    presets = yaml.safe_load(Path("rules/channel_presets.yaml").read_text(encoding="utf-8"))
    presets["presets"]["web"].update(size=[123, 123], background="#102030")
    presets_file = tmp_path / "studio-presets.yaml"
    presets_file.write_text(yaml.safe_dump(presets), encoding="utf-8")
    rules = yaml.safe_load(Path("rules/default.yaml").read_text(encoding="utf-8"))
    rules.pop("include", None)
    rules["confidence"]["review_below"] = 0.0  # both images auto: their JPGs are rendered
    rules_file = tmp_path / "all-auto.yaml"
    rules_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
    out = tmp_path / "shell-out"
    command = ["run", str(small_shoot), "--job-id", "SET-OPT-1", "--presets", str(presets_file)]
    command += ["--rules", str(rules_file)]
    result = subprocess.run(
        [sys.executable, "-m", "cutline", *command],
        env={**os.environ, "CUTLINE_MODEL": "modnet", "CUTLINE_OUTPUT_ROOT": str(out)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    presets_file.write_text("presets: {}\n", encoding="utf-8")
    job_root = out / "SET-OPT-1"  # the shell's output root, with no --out
    config = json.loads((job_root / "run-config.json").read_text(encoding="utf-8"))
    assert config["model"] == "modnet" and config["presets_file"] == "run parameter"
    rows = read_ledger(str(job_root / "ledger.csv"))
    assert {row["model"] for row in rows} == {"modnet"} and {row["lane"] for row in rows} == {
        "auto"
    }
    from PIL import Image

    jpgs = sorted((job_root / "jpg" / "web").glob("*.jpg"))
    assert jpgs, sorted(p.name for p in job_root.rglob("*.jpg"))
    for jpg in jpgs:
        with Image.open(jpg) as image:
            assert image.size == (123, 123)
            assert image.getpixel((0, 0)) == pytest.approx((16, 32, 48), abs=3)
    parameters = _run_parameters("SET-OPT-1")
    assert parameters["output_root"] == str(out)
    assert parameters["options"]["model"] == "modnet" and "123" in parameters["options"]["presets"]


def test_credentials_are_checked_on_each_side_and_never_sent(
    prefect_server, model_home, bucket, tmp_path
):
    import s3fs

    fs = s3fs.S3FileSystem(
        key=s3server.ACCESS_KEY,
        secret=s3server.SECRET_KEY,
        client_kwargs={"endpoint_url": os.environ["CUTLINE_S3_ENDPOINT_URL"]},
    )
    write_sample_shoot(tmp_path / "shoot", DEFAULT_SAMPLES[:1], size=(320, 240))
    fs.put(str(tmp_path / "shoot"), f"{bucket}/shoot", recursive=True)
    shoot, out = f"s3://{bucket}/shoot", f"s3://{bucket}/out"

    # A wrong key in the submitting shell: refused at once, before a run exists.
    result = _cutline_run(shoot, "SET-KEY-1", out, CUTLINE_S3_SECRET_ACCESS_KEY="not-the-key")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot be read with the S3 credentials of this shell" in result.stderr
    assert "not-the-key" not in result.stdout + result.stderr

    # A host (here a flow-run process of its own, as a worker runs one) whose key is wrong
    # fails at preflight and says that it is its own credentials.
    host = subprocess.run(
        [sys.executable, "-m", "flows.process_shoot", shoot, "SET-KEY-2", "--out", out],
        env={
            **os.environ,
            "PREFECT_API_URL": prefect_server,
            "CUTLINE_S3_SECRET_ACCESS_KEY": "not-the-key",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert host.returncode == 1, host.stdout + host.stderr
    assert "cannot read" in host.stderr and "with its own credentials" in host.stderr
    assert "credentials are never sent with a run" in host.stderr
    assert not fs.exists(f"{bucket}/out/SET-KEY-2")

    def host_run(job: str, out_root: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flows.process_shoot", shoot, job, "--out", out_root],
            env={**os.environ, "PREFECT_API_URL": prefect_server, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )

    # A host whose DAM token the DAM refuses stops before any image, saying so (not one
    # failed registration per image).
    from tests.dam_http_server import DamServer

    with DamServer("the-dam-token") as dam:
        host = host_run(
            "SET-KEY-3",
            out,
            CUTLINE_DAM_ADAPTER="http",
            CUTLINE_DAM_HTTP_BASE_URL=dam.url,
            CUTLINE_DAM_HTTP_TOKEN="not-the-dam-token",
            CUTLINE_DAM_HTTP_MAX_RETRIES="0",
        )
        writes = [r for r in dam.state.requests if r.method != "GET"]
    assert host.returncode == 1, host.stdout + host.stderr
    assert "refused the credentials of the host running this shoot" in host.stderr
    assert "CUTLINE_DAM_HTTP_TOKEN" in host.stderr and "not-the-dam-token" not in host.stderr
    assert not writes and not fs.exists(f"{bucket}/out/SET-KEY-3/ledger.csv")

    # A host whose key may read the shoot but not write the outputs stops before any image.
    host = host_run(
        "SET-KEY-4",
        out,
        CUTLINE_S3_ACCESS_KEY_ID=s3server.READ_ONLY_KEY,
        CUTLINE_S3_SECRET_ACCESS_KEY=s3server.READ_ONLY_SECRET,
    )
    assert host.returncode == 1, host.stdout + host.stderr
    assert f"cannot write its outputs to {out} with its own credentials" in host.stderr
    assert "Nothing was processed" in host.stderr and s3server.READ_ONLY_SECRET not in host.stderr
    assert not fs.exists(f"{bucket}/out/SET-KEY-4")


def _property(page, label: str):
    """A parameter's block in the UI's Custom run form, by its label."""
    return (
        page.locator(".schema-form-property")
        .filter(has=page.locator(".schema-form-property__label", has_text=label))
        .last
    )


@pytest.mark.browser
def test_a_custom_run_in_the_ui_chooses_run_options_for_one_shoot(
    prefect_server, model_home, settings, small_shoot, browser_page, artifacts_dir
):
    """Ops start a shoot from Deployments -> shoot -> Run -> Custom run and give it its own
    batch size in the form's `options` block; the run is made and runs with it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    page, job = browser_page, "SET-UI-1"
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("process-shoot/shoot")
    page.goto(f"{settings.ui_url}/deployments/deployment/{deployment.id}/run")
    _property(page, "shoot").locator("textarea, input").first.fill(str(small_shoot))
    _property(page, "job_id").locator("textarea, input").first.fill(job)
    options = _property(page, "options (Optional)")
    options.get_by_role("button", name="RunOptions", exact=True).click()
    batch = _property(page, "Batch Size (Optional)")
    batch.get_by_role("button", name="int", exact=True).click()
    batch.locator("input").first.fill("1")
    page.screenshot(path=str(artifacts_dir / "custom-run-options.png"), full_page=True)
    page.get_by_role("button", name="Submit").click()

    def made():
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[job]))
            )
        return runs[0] if runs else None

    try:  # the server retries a browser's request for up to 60 s while SQLite is busy
        made_run = wait_until(made, "the UI's custom run to be made", 90, 1)
    except AssertionError as exc:
        page.screenshot(path=str(artifacts_dir / "custom-run-submitted.png"), full_page=True)
        raise AssertionError(f"{exc}; page: {page.locator('body').inner_text()[-3000:]}") from exc

    def finished():
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(made_run.id)
        return run if run.state.is_final() else None

    try:
        run = wait_until(finished, "the UI's custom run to finish", 300, 1)
    except AssertionError as exc:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(made_run.id).state
        raise AssertionError(f"{exc}; it is {state!r}") from exc
    assert run.state.is_completed(), run.state
    assert run.parameters["options"]["batch_size"] == 1
    job_root = settings.resolved_output_root / job
    config = json.loads((job_root / "run-config.json").read_text(encoding="utf-8"))
    assert config["batch_size"] == 1
    assert len(list((job_root / "batches").glob("*.json"))) == 2
