"""Faults lose nothing: a worker killed mid-shoot, the S3 server stopping during a run (and
coming back, or not), and a full output disk. Real Prefect server, real SeaweedFS, real model."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from cutline.base import storage
from cutline.records.ledger import read_ledger
from tests import s3server
from tests.images import product_shoot
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ALL_AUTO_RULES = 'version: "faults"\nconfidence: {review_below: 0.0}\n'


def _shoot_process(shoot: str, job: str, out: str) -> list[str]:
    """The command of a process running one shoot's flow itself, as a worker does: the
    process these tests kill or starve, with the faulty settings in its environment."""
    return [sys.executable, "-m", "flows.process_shoot", shoot, job, "--out", out]


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The test session's environment plus Cutline settings for one faulty run."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(ALL_AUTO_RULES)
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the session's server
        "CUTLINE_RULES_FILE": str(rules),
        "CUTLINE_BATCH_SIZE": "4",
    }
    env.update({f"CUTLINE_{key.upper()}": value for key, value in values.items()})
    return env


def _wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    """Poll ``condition`` until it holds; fail at once if ``process`` (the run) ends first."""

    def holds():
        value = condition()
        if not value and process is not None and process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the run ended (code {process.returncode}) before {what}:\n{out}")
        return value

    return wait_until(holds, what, timeout=timeout, interval=0.2)


@pytest.fixture
def restore_limits(settings):
    """The tests below slow DAM writes down in their runs; put the shared limit back after."""
    yield
    from cutline.base.settings import reload_settings
    from cutline.services import limits

    limits._ensured.clear()
    limits.ensure_limits(reload_settings())


def test_a_worker_killed_mid_shoot_reruns_without_recomputing_or_registering_twice(
    prefect_server, model_home, tmp_path, restore_limits
):
    from dam_adapters.local_catalog import LocalCatalog

    shoot, out, catalog_dir = tmp_path / "shoot", tmp_path / "out", tmp_path / "catalog"
    names = product_shoot(shoot, 16)
    # Two DAM writes a second, so the kill lands while registrations are under way.
    env = _env(tmp_path, catalog_dir=str(catalog_dir), dam_writes_per_second="2")
    command = _shoot_process(str(shoot), "KILL-1", str(out))
    worker = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Counted by the catalog's index, not its record files: a record file is written just
    # before its index row, so a kill between the two leaves a file the catalog does not list.
    _wait_for(
        lambda: len(_registered(catalog_dir, "KILL-1")) >= 3,
        300,
        "the first DAM registrations",
        worker,
    )
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)

    state = out / "KILL-1" / "state"
    cut_before = {
        p.stem for p in state.glob("*.json") if "cutout" in json.loads(p.read_text())["keys"]
    }
    registered_before = _registered(catalog_dir, "KILL-1")
    assert 3 <= len(registered_before) < len(names), "the kill must land mid-registration"
    assert not (out / "KILL-1" / "ledger.csv").exists()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    rows = read_ledger(str(out / "KILL-1" / "ledger.csv"))
    assert sorted(r["source_name"] for r in rows) == names
    assert all(r["lane"] == "auto" for r in rows), [r["error"] for r in rows if r["error"]]
    for row in rows:  # finished work is reused, not recomputed
        if row["image_id"] in cut_before:
            assert "cutout" in row["reused"].split(";"), row
    assert len(cut_before) >= len(registered_before)
    assert sum("register" in r["reused"].split(";") for r in rows) >= len(registered_before) - 2
    assets = LocalCatalog(catalog_dir).list_job("KILL-1")
    assert len(assets) == len(names)  # one asset per image
    assert {a.dam_id for a in assets} == {r["dam_id"] for r in rows}
    assert registered_before <= {a.dam_id for a in assets}
    assert all(a.revision == 1 for a in assets), "an asset was registered twice"


def _registered(catalog_dir: Path, job: str) -> set[str]:
    """DAM ids the local catalog lists for ``job`` (none before its index exists)."""
    from dam_adapters.local_catalog import LocalCatalog

    if not (catalog_dir / "index.sqlite").is_file():
        return set()
    return {r.dam_id for r in LocalCatalog(catalog_dir).list_job(job)}


_HOLD_THE_MODEL = """
import time
from cutline.services.limits import model_slot
with model_slot():
    print("holding", flush=True)
    time.sleep(600)
"""


def _start_model_holder() -> subprocess.Popen:
    """A process of its own session that holds the model's slot (`_HOLD_THE_MODEL`), once it
    says it does."""
    from prefect.settings import PREFECT_API_URL

    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_MODEL],
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = holder.stdout.readline()
    if line.strip() != "holding":
        os.killpg(holder.pid, signal.SIGKILL)
        raise AssertionError(line + holder.stdout.read())
    return holder


def test_a_worker_killed_inside_a_cutout_frees_the_model_for_other_shoots_within_two_minutes(
    prefect_server, restore_limits
):
    """A worker SIGKILLed (OOM killer, power) while it holds the model slot cannot give it
    back; its lease lapses instead, so the next shoot waits well under Prefect's default
    five minutes for the model."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    from cutline.services.limits import MODEL_LIMIT, upsert_limit

    with get_client(sync_client=True) as client:
        upsert_limit(client, MODEL_LIMIT, 1)  # one slot: the killed worker's
    holder = _start_model_holder()
    try:
        taken = concurrency(MODEL_LIMIT, occupy=1, strict=True, timeout_seconds=3)
        with pytest.raises(TimeoutError), taken:  # the slot is really taken
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    killed = time.monotonic()
    try:
        with concurrency(MODEL_LIMIT, occupy=1, strict=True, timeout_seconds=240):
            waited = time.monotonic() - killed
    except TimeoutError:
        pytest.fail("the killed worker's model slot was still held after 240 s")
    # The lease (60 s, the server's shortest) plus the repossessor's cadence (15 s) plus
    # slack; Prefect's default lease would keep the slot for 300 s.
    assert waited < 120, f"the killed worker's model slot was held {waited:.0f} s"


@pytest.fixture
def own_s3(tmp_path) -> s3server.SeaweedS3:
    """A SeaweedFS of this test's own, so stopping it does not disturb other tests."""
    server = s3server.start(tmp_path / "seaweedfs")
    try:
        yield server
    finally:
        server.stop()


def _s3_shoot(server: s3server.SeaweedS3, tmp_path: Path, count: int) -> tuple[str, list[str]]:
    import s3fs

    fs = s3fs.S3FileSystem(
        key=s3server.ACCESS_KEY,
        secret=s3server.SECRET_KEY,
        client_kwargs={"endpoint_url": server.endpoint},
    )
    fs.mkdir("faults")
    local = tmp_path / "local-shoot"
    names = product_shoot(local, count)
    fs.put(str(local) + "/", "faults/shoot/", recursive=True)
    return "s3://faults", names


def _s3_files(server: s3server.SeaweedS3, prefix: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(
        key=s3server.ACCESS_KEY,
        secret=s3server.SECRET_KEY,
        client_kwargs={"endpoint_url": server.endpoint},
        skip_instance_cache=True,
    )
    try:
        return fs.find(prefix)
    except FileNotFoundError:
        return []


def _s3_run_under_way(
    server: s3server.SeaweedS3, tmp_path: Path, job: str, retry_delays: str
) -> tuple[subprocess.Popen, str, list[str]]:
    """A 12-image shoot from and to the server, run by a process of its own; returns once
    its first masks are written (the moment to pull the plug)."""
    bucket, names = _s3_shoot(server, tmp_path, 12)
    env = _env(
        tmp_path,
        s3_endpoint_url=server.endpoint,
        catalog_dir=str(tmp_path / "catalog"),
        stage_retry_delays=retry_delays,
    )
    run = subprocess.Popen(
        _shoot_process(f"{bucket}/shoot", job, f"{bucket}/out"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(lambda: _s3_files(server, f"faults/out/{job}/masks"), 300, "the first masks", run)
    return run, bucket, names


def test_s3_stopping_mid_run_is_ridden_out_when_it_comes_back(
    own_s3, prefect_server, model_home, tmp_path, override_settings
):
    override_settings(s3_endpoint_url=own_s3.endpoint)  # for reading the outputs back here
    run, bucket, names = _s3_run_under_way(own_s3, tmp_path, "S3DOWN-1", "[5, 10, 20, 30]")
    own_s3.kill()  # the S3 server goes away mid-run
    time.sleep(5)  # the outage itself: five seconds without S3, not a wait for a condition
    assert run.poll() is None
    own_s3.restart()
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output
    rows = read_ledger(f"{bucket}/out/S3DOWN-1/ledger.csv")
    assert sorted(r["source_name"] for r in rows) == names
    assert all(r["lane"] == "auto" for r in rows), [r["error"] for r in rows if r["error"]]
    for row in rows:
        png = Image.open(io.BytesIO(storage.read_bytes(row["png"])))
        png.load()
        assert png.mode == "RGBA"


def test_s3_that_does_not_come_back_fails_the_run_with_a_ledger_of_unfinished_images(
    own_s3, prefect_server, model_home, tmp_path, settings
):
    run, _, names = _s3_run_under_way(own_s3, tmp_path, "S3GONE-1", "[1, 2]")
    own_s3.kill()
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 1, output
    assert "did not finish" in output and "not finished" in output
    ledger = settings.data_root / "unfinished-ledgers" / "S3GONE-1" / "ledger.csv"
    assert str(ledger) in output, output
    assert "rerun the job" in output.lower()
    rows = read_ledger(str(ledger))
    assert sorted(r["source_name"] for r in rows) == names  # every image accounted for
    unfinished = [r for r in rows if "not finished" in r["error"]]
    assert unfinished and all(r["lane"] == "failed" for r in unfinished)
    assert all(r["lane"] in {"auto", "failed"} for r in rows)
    assert s3server.SECRET_KEY not in output


def _mount_tmpfs(target: Path, size: str, options: str = "") -> None:
    target.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {result.stderr.strip()}")


def test_a_full_output_disk_stops_the_run_clearly_and_leaves_no_half_written_file(
    prefect_server, model_home, tmp_path, override_settings, settings
):
    from psd_tools import PSDImage

    from flows.process_shoot import process_shoot

    shoot, out = tmp_path / "shoot", tmp_path / "small-disk"
    names = product_shoot(shoot, 12, size=(640, 480))
    _mount_tmpfs(out, "6m")
    try:
        rules = tmp_path / "rules.yaml"
        rules.write_text(ALL_AUTO_RULES)
        override_settings(
            rules_file=str(rules),
            batch_size="4",
            stage_retry_delays="[1]",
            catalog_dir=str(tmp_path / "catalog"),
        )
        state = process_shoot(
            shoot=str(shoot), job_id="FULL-1", output_root=str(out), return_state=True
        )
        assert state.is_failed()
        with pytest.raises(Exception) as info:
            state.result()
        message = str(info.value)
        assert "did not finish" in message and "No space left on the output storage" in message
        assert "Free space there" in message or "rerun the job" in message.lower()

        leftovers = [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".part")]
        assert leftovers == []
        for path in (p for p in out.rglob("*") if p.is_file()):
            if path.suffix in {".png", ".jpg"}:
                Image.open(path).load()  # complete, or it would not decode
            elif path.suffix == ".psd":
                psd = PSDImage.open(path)
                assert [layer.name for layer in psd] == ["Original", "Cutout"]
            elif path.suffix == ".json":
                json.loads(path.read_text())

        # The ledger goes to the job folder if it still fits, else under the data root.
        found = re.search(r"The ledger (\S+) lists them|it is at (\S+?)\.(?: |$)", message)
        assert found, message
        ledger = found.group(1) or found.group(2)
        assert ledger in {
            str(out / "FULL-1" / "ledger.csv"),
            str(settings.data_root / "unfinished-ledgers" / "FULL-1" / "ledger.csv"),
        }
        rows = read_ledger(ledger)
        assert sorted(r["source_name"] for r in rows) == names
        done = [r for r in rows if r["lane"] == "auto"]
        assert done, "the disk should fill part-way through the shoot, not at once"
        assert any("not finished" in r["error"] for r in rows)
        for row in done:
            assert Path(row["png"]).is_file() and Path(row["psd"]).is_file()
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def test_a_full_catalog_disk_stops_the_run_with_the_catalogs_cause(
    prefect_server, model_home, tmp_path, override_settings
):
    from flows.process_shoot import process_shoot

    shoot, catalog = tmp_path / "shoot", tmp_path / "small-catalog"
    product_shoot(shoot, 6, size=(640, 480))
    _mount_tmpfs(catalog, "400k")  # the index and a record or two fit, the renditions do not
    try:
        rules = tmp_path / "rules.yaml"
        rules.write_text(ALL_AUTO_RULES)
        override_settings(rules_file=str(rules), stage_retry_delays="[0]", catalog_dir=str(catalog))
        state = process_shoot(
            shoot=str(shoot),
            job_id="CATFULL-1",
            output_root=str(tmp_path / "out"),
            return_state=True,
        )
        assert state.is_failed()
        with pytest.raises(Exception) as info:
            state.result()
        message = str(info.value)
        # The cause, where it is and what to do, not "unexpected OSError ... report it".
        assert "No space left in the DAM catalog at" in message, message
        assert "CUTLINE_CATALOG_DIR" in message and "unexpected" not in message
        assert not [p for p in catalog.rglob("*.part") if p.is_file()]
    finally:
        subprocess.run(["umount", "-l", str(catalog)], check=False)


def test_a_read_only_rendition_folder_stops_the_run_once_with_the_cause(
    prefect_server, model_home, tmp_path, override_settings
):
    from flows.process_shoot import process_shoot

    shoot, out = tmp_path / "shoot", tmp_path / "out"
    names = product_shoot(shoot, 4, size=(320, 240))
    png = out / "RO-1" / "png"
    _mount_tmpfs(png, "1m", ",ro")  # root ignores permissions: a read-only mount refuses it too
    try:
        rules = tmp_path / "rules.yaml"
        rules.write_text(ALL_AUTO_RULES)
        override_settings(
            rules_file=str(rules), stage_retry_delays="[0]", catalog_dir=str(tmp_path / "cat")
        )
        state = process_shoot(
            shoot=str(shoot), job_id="RO-1", output_root=str(out), return_state=True
        )
        assert state.is_failed()
        message = str(state.result(raise_on_failure=False))
        assert "did not finish" in message and "refuses writes" in message, message
        assert "Make that folder writable" in message
        rows = read_ledger(str(out / "RO-1" / "ledger.csv"))
        assert sorted(r["source_name"] for r in rows) == names
        # Not one "unexpected OSError ... report it" per image: the batch stopped as a whole.
        assert not any("unexpected" in r["error"] for r in rows)
        assert all("not finished" in r["error"] for r in rows if r["lane"] == "failed")
    finally:
        subprocess.run(["umount", "-l", str(png)], check=False)


def _signoffs(job: str, states: list[str]) -> list:
    from cutline.services.signoff_queue import signoff_runs

    return signoff_runs(job, states)


def test_two_runs_of_one_job_at_once_run_one_after_the_other_with_one_signoff(
    prefect_server, model_home, tmp_path
):
    from dam_adapters import ApprovalState
    from dam_adapters.local_catalog import LocalCatalog
    from tests.reviews import decide

    shoot, out, catalog_dir = tmp_path / "shoot", tmp_path / "out", tmp_path / "catalog"
    names = product_shoot(shoot, 6)
    env = _env(tmp_path, catalog_dir=str(catalog_dir))
    command = _shoot_process(str(shoot), "TWICE-1", str(out))
    runs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)
    waited = [o for o in outputs if "this run starts when that one ends (one run per job)" in o]
    assert len(waited) == 1, "\n----\n".join(outputs)

    rows = read_ledger(str(out / "TWICE-1" / "ledger.csv"))
    assert sorted(r["source_name"] for r in rows) == names
    assets = LocalCatalog(catalog_dir).list_job("TWICE-1")
    assert len(assets) == len(names) and all(a.revision == 1 for a in assets)

    # Exactly one sign-off form is left once both requests have settled.
    def settled():
        busy = _signoffs("TWICE-1", ["SCHEDULED", "PENDING", "RUNNING"])
        paused = _signoffs("TWICE-1", ["PAUSED"])
        return paused if not busy and paused else None

    paused = wait_until(settled, "the sign-off requests to settle", timeout=180)
    assert len(paused) == 1
    time.sleep(3)  # a second form, had one been started late, would show up now
    assert len(_signoffs("TWICE-1", ["PAUSED", "SCHEDULED", "PENDING", "RUNNING"])) == 1
    form = {"decision": "approve", "send_back": "", "note": "", "producer": "Pat", "comment": ""}
    assert decide(str(paused[0].id), form).state.is_completed()
    signed = LocalCatalog(catalog_dir).list_job("TWICE-1")
    assert {a.approval_state for a in signed} == {ApprovalState.SIGNED_OFF}
    assert {a.approved_by for a in signed} == {"Pat"}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_run_promptly_and_the_rerun_finishes_it(
    prefect_server, model_home, tmp_path, restore_limits, signum
):
    from cutline.services.job_lock import LEASE_SECONDS
    from cutline.services.review_queue import read_run
    from dam_adapters.local_catalog import LocalCatalog

    shoot, out, catalog_dir = tmp_path / "shoot", tmp_path / "out", tmp_path / "catalog"
    names = product_shoot(shoot, 6, size=(320, 240))
    job = f"SIG-{signum.value}"
    env = _env(tmp_path, catalog_dir=str(catalog_dir), dam_writes_per_second="2")
    command = _shoot_process(str(shoot), job, str(out))
    worker = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    records = catalog_dir / "records"
    _wait_for(
        lambda: records.is_dir() and len(list(records.glob("*.json"))) >= 2,
        300,
        "the first DAM registrations",
        worker,
    )
    sent = time.monotonic()
    worker.send_signal(signum)
    output = worker.communicate(timeout=60)[0]
    stopped_in = time.monotonic() - sent
    assert stopped_in < 20, f"took {stopped_in:.0f} s to stop:\n{output}"
    assert worker.returncode != 0
    assert "Traceback" not in output, output

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        (first,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[job]))
        )
    state = read_run(str(first.id)).state
    assert state.is_final() and not state.is_completed(), state  # not left Running

    started = time.monotonic()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # The process releases the job's slot as it stops. Once in CI (SIGINT) the release call was
    # cut short by the signal; then the dead run's lease lapses within LEASE_SECONDS and the
    # rerun goes on by itself: a short wait, never the CUTLINE_JOB_WAIT_MINUTES of a live run.
    if "one run per job" in rerun.stdout + rerun.stderr:
        assert time.monotonic() - started < LEASE_SECONDS + 120, rerun.stdout + rerun.stderr
    rows = read_ledger(str(out / job / "ledger.csv"))
    assert sorted(r["source_name"] for r in rows) == names
    assert all(r["lane"] == "auto" for r in rows), [r["error"] for r in rows if r["error"]]
    assets = LocalCatalog(catalog_dir).list_job(job)
    assert len(assets) == len(names) and all(a.revision == 1 for a in assets)
    assert time.monotonic() - started < 300


def _process_of_run(run_id: str) -> int | None:
    """The pid of the process executing a flow run (the runner gives it the run id)."""
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                return int(environ.parent.name)
        except OSError:
            continue
    return None


def test_a_review_whose_stack_dies_while_the_decision_lands_is_run_again_and_lands(
    prefect_server, model_home, tmp_path, settings
):
    """The machine 'crashes' (worker process and the review's process killed) right after a
    retoucher's answer was taken: the run is left Running; `cutline up` finds it silent and
    runs it again, which lands the answer already given (nobody is asked twice)."""
    from cutline.imaging.samples import Sample, write_sample_shoot
    from cutline.ops import stack
    from cutline.services.review_queue import read_run, resume_review
    from cutline.services.stranded_runs import stranded_runs
    from dam_adapters import ApprovalState
    from dam_adapters.local_catalog import LocalCatalog
    from flows.process_shoot import process_shoot
    from tests.reviews import ui_form, wait_for_reviews

    job = "CRASH-REV"
    sample = Sample("GL-9_front.jpg", "GL-9", "glassware", "tall", (150, 170, 190), "web", 4, "")
    write_sample_shoot(tmp_path / "shoot", [sample], size=(2400, 1800))
    process_shoot(shoot=str(tmp_path / "shoot"), job_id=job, output_root=str(tmp_path / "out"))
    (entry,) = wait_for_reviews(settings, job, 1)

    resume_review(entry.run_id, ui_form("approve", retoucher="Kim Retoucher"))
    wait_until(lambda: read_run(entry.run_id).state.is_running(), "the review to land", 120, 0.05)
    child = _process_of_run(entry.run_id)
    serve = stack._read_pid(stack._pid_file(settings, "worker"))
    assert child and serve, "the review's process and the worker must be found"
    os.killpg(serve, signal.SIGKILL)
    os.kill(child, signal.SIGKILL)
    catalog = LocalCatalog(settings.resolved_catalog_dir)
    assert all(r.approval_state != ApprovalState.APPROVED for r in catalog.list_job(job))
    stack.up(settings)  # the machine is back: a fresh worker, nothing recovered yet
    time.sleep(2)  # a live run would have moved on by now; a stranded one stays Running
    assert read_run(entry.run_id).state.is_running()  # stranded: Running, with no process

    stale = 40.0  # the worker's runs beat every 30 s
    # The review itself, not just any run of the job: the sign-off run the decision started
    # was killed too, and may fall silent first.
    wait_until(
        lambda: entry.run_id in {str(r.id) for r in stranded_runs(stale, job)},
        "the review to fall silent",
        180,
        2,
    )
    env = {**os.environ, "CUTLINE_STRANDED_AFTER_SECONDS": str(stale)}
    up = subprocess.run(
        [sys.executable, "-m", "cutline", "up"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"rescheduled review-cutout run {entry.run_name}" in up.stdout, up.stdout

    def landed():
        run = read_run(entry.run_id)
        return run if run.state.is_final() else None

    run = wait_until(landed, "the recovered review to land", 240, 1)
    assert run.state.is_completed(), run.state
    (record,) = catalog.list_job(job)
    assert record.approval_state == ApprovalState.APPROVED
    assert record.approved_by == "Kim Retoucher"
    (row,) = read_ledger(str(tmp_path / "out" / job / "ledger.csv"))
    assert row["review_state"] == "approved" and row["reviewed_by"] == "Kim Retoucher"


# --- The Prefect server itself crashing, clocks that disagree, stopping `cutline run` ---------


def _cutline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One `cutline` command in a process of its own, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "cutline", *args],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _start_cutline_run(shoot: Path, job: str, out: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cutline", "run", str(shoot), "--job-id", job, "--out", str(out)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(process: subprocess.Popen, text: str) -> str:
    """What ``process`` printed up to and including the line holding ``text``."""
    seen = ""
    while text not in seen:
        line = process.stdout.readline()
        assert line, f"the command ended ({process.wait()}) before printing {text!r}:\n{seen}"
        seen += line
    return seen


def _active_slots(name: str) -> int | None:
    """Slots taken of the limit ``name``; None when it does not exist (a job's limit is
    deleted once no run of the job is going)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).active_slots
        except ObjectNotFound:
            return None


def _kill_server(settings) -> None:
    """kill -9 the session's Prefect server (a crash: nothing it holds in memory survives)."""
    from cutline.ops import stack

    pid = stack._read_pid(stack._pid_file(settings, "server"))
    assert pid, "the session's Prefect server must be running"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not stack.is_healthy(settings.api_url, timeout=1), "the server to die", 30)


def test_a_prefect_server_killed_mid_shoot_keeps_no_slot_and_cutline_run_rides_it_out(
    prefect_server, model_home, tmp_path, settings, restore_limits
):
    """kill -9 of the server while a shoot holds the model's slots and its job's slot, then
    `cutline up`: the shoot completes, `cutline run` reports that (not ConnectError), every
    slot comes back, a rerun of the job starts at once, and Ctrl-C/SIGTERM still stops a
    run of the worker process that lived through the outage."""
    from cutline.ops import stack
    from cutline.services.job_lock import lock_name
    from cutline.services.limits import MODEL_LIMIT
    from cutline.services.review_queue import read_run

    job, shoot, out = "SRVDOWN-1", tmp_path / "shoot", tmp_path / "out"
    names = product_shoot(shoot, 12)
    cli = _start_cutline_run(shoot, job, out)
    try:
        _wait_for(lambda: _active_slots(MODEL_LIMIT) > 0, 300, "the shoot to hold the model", cli)
        assert _active_slots(lock_name(job)) == 1
        _kill_server(settings)
        # The outage itself: twenty seconds without the server, not a wait for a condition.
        # Long enough that Prefect's runner in the worker process gives up watching for
        # cancellations (its polls fail three times in a row).
        time.sleep(20)
        up = _cutline("up")
    finally:
        stack.up(settings)  # the session's server is back whatever happened above
    assert up.returncode == 0, up.stdout + up.stderr
    output, _ = cli.communicate(timeout=600)
    assert cli.returncode == 0, output
    assert f"{job}: the Prefect server does not answer" in output, output
    assert f"{job}: the Prefect server answers again" in output
    assert f"{job}: Completed" in output and "error:" not in output, output
    rows = read_ledger(str(out / job / "ledger.csv"))
    assert sorted(r["source_name"] for r in rows) == names

    # The slots the shoot held were given back through their leases, which outlived the
    # server (in memory, cutline-model stayed 2/2 taken for ever).
    wait_until(
        lambda: _active_slots(MODEL_LIMIT) == 0 and not _active_slots(lock_name(job)),
        "the shoot's model and job slots to be free",
        timeout=120,
    )
    started = time.monotonic()
    rerun = _cutline("run", str(shoot), "--job-id", job, "--out", str(out))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert time.monotonic() - started < 120, "the rerun waited for the job's slot"

    # SIGTERM to `cutline run` of a run the (outage-surviving) worker process runs: the
    # command exits within seconds and the run really stops, Cancelled.
    big = tmp_path / "big"
    product_shoot(big, 40, size=(640, 480))
    stopping = _start_cutline_run(big, "SRVDOWN-2", out)
    seen = _read_until(stopping, "SRVDOWN-2: Running")
    run_id = seen.split("/runs/flow-run/", 1)[1].split()[0]
    sent = time.monotonic()
    stopping.send_signal(signal.SIGTERM)
    said, _ = stopping.communicate(timeout=120)
    assert time.monotonic() - sent < 30, said
    assert stopping.returncode == 130, said
    assert "Traceback" not in said
    states: list[str] = []

    def ended_cancelled() -> bool:
        state = read_run(run_id).state
        states.append(state.name)
        return state.is_cancelled()

    # The engine of a process stopped by the stack reports the signal as a crash; the stack
    # corrects that to Cancelled as soon as the process has gone.
    wait_until(ended_cancelled, f"the run to end Cancelled (states seen: {states})", 60, 0.5)
    assert states.count("Crashed") <= 10, states  # never Crashed for more than ~5 s
    time.sleep(5)  # a process still at work would write its summary now
    assert not (out / "SRVDOWN-2" / "summary.json").exists(), "the cancelled shoot went on"


def test_slots_of_holders_that_died_with_the_server_come_back_after_cutline_up(
    prefect_server, settings, restore_limits
):
    """A machine crash: the Prefect server and a worker holding the model's only slot die
    together. After `cutline up` the worker's slot lapses with its lease (kept on disk), and a
    slot no lease accounts for (taken under a server that kept leases in memory) is given
    back as the server starts."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    from cutline.ops import stack
    from cutline.services.job_lock import lock_name
    from cutline.services.limits import MODEL_LIMIT, upsert_limit

    leaked = lock_name("LEAKED-1")
    with get_client(sync_client=True) as client:
        upsert_limit(client, MODEL_LIMIT, 1)
        upsert_limit(client, leaked, 1)
        client.increment_concurrency_slots([leaked], 1, "concurrency")  # taken, no lease
    holder = _start_model_holder()
    try:
        _kill_server(settings)
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        up = _cutline("up")
    finally:
        stack.up(settings)
    assert up.returncode == 0, up.stdout + up.stderr
    died = time.monotonic()
    assert _active_slots(leaked) == 0, "the slot without a lease was not given back at start"
    with get_client(sync_client=True) as client:  # `cutline up` set the settings' 2 slots
        upsert_limit(client, MODEL_LIMIT, 1)
    assert _active_slots(MODEL_LIMIT) == 1  # the dead worker's lease has not lapsed yet
    try:
        with concurrency(MODEL_LIMIT, occupy=1, strict=True, timeout_seconds=240):
            waited = time.monotonic() - died
    except TimeoutError:
        pytest.fail("the dead worker's model slot was still taken 240 s after `cutline up`")
    assert waited < 120, f"the dead worker's model slot was held {waited:.0f} s"


def test_a_job_slot_that_no_run_holds_does_not_block_the_rerun_for_hours(
    prefect_server, model_home, tmp_path
):
    """The job's slot is taken though no run of the job is going (its holder died with a
    server that kept leases in memory, or a server of the user's own): the rerun gives it
    back after a couple of minutes instead of waiting CUTLINE_JOB_WAIT_MINUTES for nobody."""
    from prefect.client.orchestration import get_client

    from cutline.services.job_lock import UNHELD_SLOT_SECONDS, lock_name
    from cutline.services.limits import upsert_limit

    job, shoot, out = "ORPHAN-1", tmp_path / "shoot", tmp_path / "out"
    names = product_shoot(shoot, 2)
    with get_client(sync_client=True) as client:
        upsert_limit(client, lock_name(job), 1)
        client.increment_concurrency_slots([lock_name(job)], 1, "concurrency")
    env = _env(tmp_path, catalog_dir=str(tmp_path / "catalog"), job_wait_minutes="30")
    started = time.monotonic()
    run = subprocess.run(
        _shoot_process(str(shoot), job, str(out)),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    took = time.monotonic() - started
    said = run.stdout + run.stderr
    assert run.returncode == 0, said
    assert f"cutline-job-{job} was taken for" in said and "giving the slot back" in said, said
    assert took < UNHELD_SLOT_SECONDS + 150, f"the run took {took:.0f} s"
    rows = read_ledger(str(out / job / "ledger.csv"))
    assert sorted(r["source_name"] for r in rows) == names
    assert _active_slots(lock_name(job)) is None  # the job's limit is gone with its last run


def test_a_worker_whose_clock_is_half_an_hour_behind_is_not_taken_for_dead(
    prefect_server, model_home, tmp_path, restore_limits
):
    """A worker 30 minutes behind the server (faketime) sends heartbeats stamped 30 minutes
    ago: they are judged by when the server received them, so its live run is not stranded,
    `cutline up` leaves it alone, and it completes."""
    import shutil

    from cutline.services.review_queue import read_run
    from cutline.services.stranded_runs import stranded_runs

    if not shutil.which("faketime"):
        pytest.fail("Debian's faketime is not installed: run `bash scripts/setup.sh --test`")
    job, shoot, out = "SKEW-1", tmp_path / "shoot", tmp_path / "out"
    names = product_shoot(shoot, 16)
    stale = 40.0  # the worker beats every 30 s
    # A DAM write every 4 s keeps the run going for over a minute.
    env = _env(tmp_path, catalog_dir=str(tmp_path / "catalog"), dam_writes_per_second="0.25")
    env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = "30"
    worker = subprocess.Popen(
        ["faketime", "-f", "-30m", *_shoot_process(str(shoot), job, str(out))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_id = _wait_for(lambda: _running_run_of(job), 300, "the skewed run to be Running", worker)

    def silent_for_longer_than_stale():
        from prefect.client.orchestration import get_client

        from cutline.services.stranded_runs import _server_now

        with get_client(sync_client=True) as client:
            now = _server_now(client)
        state = read_run(run_id).state
        return state.is_running() and (now - state.timestamp).total_seconds() > stale + 5

    # By the server's clock its Running state is older than `stale`: only heartbeats count now.
    _wait_for(silent_for_longer_than_stale, 120, "the run to be Running for a while", worker)
    assert run_id not in {str(r.id) for r in stranded_runs(stale, job)}
    up = _cutline("up", env={**os.environ, "CUTLINE_STRANDED_AFTER_SECONDS": str(stale)})
    assert up.returncode == 0, up.stdout + up.stderr
    assert job not in up.stdout, up.stdout  # nothing was done to the live run
    assert worker.poll() is None, "the run ended before `cutline up` looked at it"
    output, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, output
    states = _state_names(run_id)
    assert states[-1] == "Completed" and "Crashed" not in states, states
    rows = read_ledger(str(out / job / "ledger.csv"))
    assert sorted(r["source_name"] for r in rows) == names


def _running_run_of(job: str) -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[job]))
        )
    return next((str(r.id) for r in runs if r.state and r.state.is_running()), None)


def _state_names(run_id: str) -> list[str]:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [s.name for s in client.read_flow_run_states(UUID(run_id))]


def test_sigterm_to_cutline_run_whose_run_was_claimed_but_not_started_cancels_it_at_once(
    prefect_server, tmp_path
):
    """SIGTERM lands while a worker has claimed the run (Pending) but its flow has not
    started: Prefect's runner could leave such a run Cancelling (for five minutes, until the
    server's timeout); `cutline run` exits within seconds with the run Cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending

    from cutline.services.review_queue import read_run
    from flows.process_shoot import process_shoot

    # A deployment of the shoot flow that nothing serves: the test plays the claiming worker.
    process_shoot.to_deployment(name="unserved").apply()
    shoot = tmp_path / "shoot"
    product_shoot(shoot, 1)
    cli = _start_cutline_run(
        shoot, "CLAIMED-1", tmp_path / "out", CUTLINE_SHOOT_DEPLOYMENT="process-shoot/unserved"
    )
    seen = _read_until(cli, "CLAIMED-1: Scheduled")
    run_id = seen.split("/runs/flow-run/", 1)[1].split()[0]
    with get_client(sync_client=True) as client:
        assert client.set_flow_run_state(run_id, Pending()).state.is_pending()
    sent = time.monotonic()
    cli.send_signal(signal.SIGTERM)
    said, _ = cli.communicate(timeout=120)
    assert time.monotonic() - sent < 15, said
    assert cli.returncode == 130 and "stopped (Cancelled)" in said, said
    state = read_run(run_id).state
    assert state.is_cancelled(), state
