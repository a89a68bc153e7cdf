"""The `cutline` command: run shoots, manage the local stack, models and the DAM catalog."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import traceback
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cutline.base import storage
from cutline.base.errors import ConfigError, CutlineError
from cutline.base.markdown import unescaped
from cutline.base.redact import redact
from cutline.base.settings import get_settings
from cutline.imaging import model_store
from cutline.ops import stack
from cutline.ops.terminal import guard_standard_streams, invoked_as

if TYPE_CHECKING:
    from cutline.domain.run_options import RunOptions

app = typer.Typer(
    help="Cutline: studio-scale AI background removal on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Background-removal models.", no_args_is_help=True)
dam_app = typer.Typer(help="The DAM catalog.", no_args_is_help=True)
app.add_typer(models_app, name="models")
review_app = typer.Typer(
    help="The review queue: doubtful images waiting for a retoucher.", no_args_is_help=True
)
app.add_typer(dam_app, name="dam")
app.add_typer(review_app, name="review")
signoff_app = typer.Typer(
    help="Producer sign-off of shoots whose assets are in the DAM.", no_args_is_help=True
)
app.add_typer(signoff_app, name="signoff")


_DEBUG = {"on": False}  # `cutline --debug`: show tracebacks


def _fail(exc: Exception | str, code: int = 2) -> typer.Exit:
    if _DEBUG["on"] and isinstance(exc, BaseException):
        traceback.print_exception(exc)
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@app.command()
def up() -> None:
    """Start the local stack in the background: a Prefect server with UI (unless
    PREFECT_API_URL names one) and a worker on the work pool; recover runs a crash left
    Running (reviews and sign-offs run again, landing the answer already given)."""
    from cutline.services.stranded_runs import recover_stranded_runs

    settings = get_settings()
    try:
        current = stack.up(settings, worker=True)
    except CutlineError as exc:
        raise _fail(exc) from None
    typer.echo(f"Prefect API {current.api_url} is up; UI at {current.ui_url}")
    typer.echo(
        f"worker polling work pool {settings.work_pool!r} (pid {stack.worker_pid(settings)})"
    )
    with stack.using_stack(settings):  # runs left Running by a crash are run again or closed
        for run in recover_stranded_runs(settings.stranded_after_seconds):
            typer.echo(
                f"{run.action} {run.flow} run {run.name} ({run.run_id}): its process had stopped"
            )


@app.command()
def down() -> None:
    """Stop the local stack; its state stays under the data root."""
    stopped = stack.down(get_settings())
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("stack-status")
def stack_status() -> None:
    """Say whether the local stack answers, and where."""
    settings = get_settings()
    current = stack.status(settings)
    state = "up" if current.healthy else "down"
    typer.echo(f"Prefect API {current.api_url}: {state} (UI {current.ui_url})")
    worker_pid = stack.worker_pid(settings)
    typer.echo(
        f"worker: running (pid {worker_pid}), polling work pool {settings.work_pool!r}"
        if worker_pid
        else f"worker: not running on this machine (`{invoked_as()} up` starts one): shoots, reviews "
        f"and sign-offs wait until a worker polls work pool {settings.work_pool!r}"
    )
    raise typer.Exit(0 if current.healthy and worker_pid else 1)


@app.command("task-worker")
def task_worker(
    limit: Annotated[
        int | None, typer.Option(help="Batches at once (default: CUTLINE_WORKERS).", min=1)
    ] = None,
    storage_uri: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Folder or s3:// URI every host reaches, kept on the Prefect server for all "
            "shoots and task workers (once is enough).",
        ),
    ] = None,
) -> None:
    """Run shoots' batches in this process until stopped (CUTLINE_BATCH_RUNNER=task-workers):
    Prefect and the model are loaded once, for batch after batch."""
    from cutline.ops import task_worker as worker

    try:
        worker.run(get_settings(), limit, storage_uri)
    except CutlineError as exc:
        raise _fail(exc) from None


_FOLLOW_SECONDS = 2.0
# After Ctrl-C or SIGTERM: how long `cutline run` waits to see the run Cancelled. A running
# run's process gets the runner's SIGTERM and stops within seconds; one that lingers is
# killed by the runner (30 s grace), and the server marks a run still Cancelling Cancelled
# after stack.CANCELLING_TIMEOUT_SECONDS.
_STOP_WAIT_SECONDS = 20.0
# A run cancelled before its flow started (Pending, Submitting) is left to the runner this
# long; after that `cutline run` marks it Cancelled itself (nothing of it ever ran).
_UNSTARTED_GRACE_SECONDS = 3.0
_UNCLAIMED_HINT_SECONDS = 60.0
# While following a run, how long the Prefect server may be unreachable (a crash and
# `cutline up`, a restart) before `cutline run` gives up following; the run goes on anyway.
_RECONNECT_SECONDS = 600.0


def _server_unreachable(exc: Exception) -> bool:
    """Whether ``exc`` says the Prefect server did not answer (down, restarting, starting
    up), as opposed to an answer that refuses the request."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code in {502, 503, 504}


def _read_run_riding_out_outages(run_id: str, job_id: str) -> Any:
    """The run as the API has it now; while the server does not answer, keep asking (saying
    so once) for up to ``_RECONNECT_SECONDS``: a server restarted mid-shoot does not stop
    the shoot, so following it should not stop either."""
    import time

    from cutline.services.review_queue import read_run

    lost_since: float | None = None
    while True:
        try:
            run = read_run(run_id)
        except Exception as exc:
            if not _server_unreachable(exc):
                raise
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
                typer.echo(
                    f"{job_id}: the Prefect server does not answer ({type(exc).__name__}); "
                    "the run goes on without it; retrying for up to "
                    f"{_RECONNECT_SECONDS / 60:.0f} min (`{invoked_as()} up` starts the local server)",
                    err=True,
                )
            elif now - lost_since > _RECONNECT_SECONDS:
                raise CutlineError(
                    f"The Prefect server did not answer for {_RECONNECT_SECONDS / 60:.0f} min "
                    f"while this terminal followed shoot {job_id} (run {run_id}); the run may "
                    "still be going.",
                    hint=f"Start the server (`{invoked_as()} up`), then `{invoked_as()} status {job_id}` "
                    "says where the run is; running the same command again finishes the shoot "
                    "(finished images are reused).",
                ) from None
            time.sleep(_FOLLOW_SECONDS)
            continue
        if lost_since is not None:
            typer.echo(f"{job_id}: the Prefect server answers again", err=True)
        return run


def _follow(run_id, job_id: str) -> Any:
    """Wait for a submitted shoot run to end, saying when its state changes; a Prefect
    server that stops answering for a while (restarted) is waited for."""
    import time

    seen, started = "", time.monotonic()
    hinted = False
    while True:
        run = _read_run_riding_out_outages(str(run_id), job_id)
        name = run.state.name if run.state else "Scheduled"
        if name != seen:
            typer.echo(f"{job_id}: {name}")
            seen = name
        if run.state and run.state.is_final():
            return run
        unclaimed = run.state is None or run.state.is_scheduled()
        if unclaimed and not hinted and time.monotonic() - started > _UNCLAIMED_HINT_SECONDS:
            typer.echo(
                "still waiting: other shoots hold the deployment's slots "
                "(CUTLINE_MAX_CONCURRENT_SHOOTS), or nothing serves the deployment "
                f"(`{invoked_as()} up`, or a worker on the work pool)"
            )
            hinted = True
        time.sleep(_FOLLOW_SECONDS)


def _refuse_unreadable_remote(uri: str, what: str) -> None:
    """Say at once when this shell's own credentials cannot read an object-store location.
    The run's host reads the shoot with its own credentials (they never travel with a run),
    but this command reads the run's summary with these: a wrong key here would only show
    after the whole shoot had run."""
    import botocore.exceptions

    loc = storage.locate(uri)
    try:
        loc.fs.invalidate_cache()
        loc.fs.ls(loc.path.split("/", 1)[0])  # the bucket: a shoot or output may not exist yet
    except FileNotFoundError:
        return  # no such bucket: the run says so, in its own words
    except (PermissionError, botocore.exceptions.BotoCoreError) as exc:
        raise ConfigError(
            f"{what} {uri} cannot be read with the S3 credentials of this shell: {exc}.",
            hint="The run would use its host's own credentials, but this command reads the "
            "shoot's summary with these: fix CUTLINE_S3_ACCESS_KEY_ID / "
            "CUTLINE_S3_SECRET_ACCESS_KEY (or the AWS profile) in this shell.",
        ) from None


def _refuse_missing_local(path: str, what: str, *, folder: bool) -> None:
    """Say at once, before anything is submitted, that a local path does not exist (the run
    itself checks everything else, object-store paths included)."""
    if "://" in path and not path.startswith("file://"):
        return
    local = Path(path.removeprefix("file://")).expanduser()
    if not (local.is_dir() if folder else local.is_file()):
        kind = "folder" if folder else "file"
        raise ConfigError(
            f"{what} {path} does not exist or is not a {kind}.",
            hint="Check the path (relative paths are taken from the current folder).",
        )


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM (a closed terminal, a scheduler stopping the job) acts like Ctrl-C."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_run(run_id: str, job_id: str) -> int:
    """Cancel the shoot run this terminal started (Ctrl-C or SIGTERM) and wait, bounded, for
    it to stop; finished work stays in the job folder, so the same command finishes it.

    A run cancelled while its process was starting (Pending) never runs its flow (the engine
    is refused Running), but Prefect's runner may leave it Cancelling; once it has had a
    moment to act, such a run is marked Cancelled here. Another Ctrl-C or SIGTERM while
    waiting stops the waiting, not the stopping."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling

    from cutline.services.review_queue import read_run

    typer.echo(f"\nstopping shoot {job_id} (run {run_id}) ...", err=True)
    state = None
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Cancelling(message="stopped from the terminal"))
            asked = time.monotonic()
            deadline = asked + _STOP_WAIT_SECONDS
            run = read_run(run_id)
            while not (run.state and run.state.is_final()) and time.monotonic() < deadline:
                never_ran = run.start_time is None and run.state and run.state.is_cancelling()
                if never_ran and time.monotonic() - asked > _UNSTARTED_GRACE_SECONDS:
                    client.set_flow_run_state(
                        run_id, Cancelled(message="stopped from the terminal before it started")
                    )
                time.sleep(0.5)
                run = read_run(run_id)
            state = run.state
    except KeyboardInterrupt:
        pass  # asked twice: stop waiting; the run stops on its own
    except Exception as exc:
        if not _server_unreachable(exc):
            raise
        typer.secho(
            f"could not reach the Prefect server to stop shoot {job_id} "
            f"({type(exc).__name__}); the run may go on: cancel run {run_id} in the UI once "
            f"the server is back (`{invoked_as()} up`)",
            fg=typer.colors.RED,
            err=True,
        )
        return 130
    ended = state.name if state else "Cancelling"
    typer.echo(
        f"shoot {job_id} {'stopped' if state and state.is_final() else 'is stopping'} "
        f"({ended}); finished images are kept: run the same command again to finish it",
        err=True,
    )
    return 130


def run_shoot(
    shoot: str,
    job_id: str,
    manifest: str | None,
    out: str | None,
    detach: bool = False,
    allow_bulk_withdrawal: bool = False,
    choices: dict[str, str] | None = None,
) -> int:
    """Submit a run of the process-shoot deployment (the same run the UI's Custom run makes,
    which ops can Retry), follow it to the end and print its summary; return the exit code.
    Ctrl-C or SIGTERM while following cancels the run; ``detach`` returns once submitted.

    Paths are made absolute here: the run executes in the stack's worker or a worker.
    Every setting this shell was given reaches the run (cutline.domain.run_options): run
    options as its ``options`` parameter (``choices``: --model, --rules, --presets over the
    environment's), host settings as expectations the executing host must meet.
    """
    from prefect.deployments import run_deployment

    from cutline.domain.items import JobLayout, validate_job_id
    from cutline.domain.run_options import options_from_environment
    from cutline.records.summary import ShootSummary, summary_markdown
    from cutline.services.job_lock import refuse_similar_jobs

    settings = get_settings()
    validate_job_id(job_id)  # refused here, before a run is made, as the run would refuse it
    _refuse_missing_local(shoot, "Shoot folder", folder=True)
    if manifest:
        _refuse_missing_local(manifest, "Manifest", folder=False)
    output_root = storage.locate(out or str(settings.resolved_output_root)).uri()
    for uri, what in ((shoot, "Shoot folder"), (output_root, "Output root")):
        if not detach and "://" in uri and not uri.startswith("file://"):
            _refuse_unreadable_remote(uri, what)  # this command reads the summary at the end
    options = _with_choices(options_from_environment(settings), choices or {})
    parameters = {
        "shoot": storage.locate(shoot).uri(),
        "job_id": job_id,
        "manifest": storage.locate(manifest).uri() if manifest else None,
        "output_root": output_root,
    }
    if allow_bulk_withdrawal:  # only when asked: a stack of an older version lacks it
        parameters["allow_bulk_withdrawal"] = True
    chosen = options.model_dump(mode="json", exclude_none=True)
    if chosen:  # only when there are some: a stack of an older version lacks the parameter
        parameters["options"] = chosen
    with stack.using_stack(settings) as current:
        refuse_similar_jobs(job_id)
        submitted = run_deployment(
            settings.shoot_deployment,
            parameters=parameters,
            timeout=0,
            as_subflow=False,
            flow_run_name=job_id,  # named at once: `cutline status JOB` finds it before it starts
        )
        typer.echo(f"shoot {job_id}: run {current.ui_url}/runs/flow-run/{submitted.id}")
        if not current.managed:
            _say_where_local_paths_are(parameters, settings.work_pool)
        if detach:
            typer.echo(f"the run goes on without this terminal: `{invoked_as()} status {job_id}`")
            return 0
        with _signals_as_interrupt():  # also while stopping: a second signal ends the wait
            try:
                run = _follow(submitted.id, job_id)
            except KeyboardInterrupt:
                return _stop_run(str(submitted.id), job_id)
        if not run.state.is_completed():
            typer.secho(
                f"error: shoot {job_id} ended {run.state.name}: {run.state.message or 'no message'}",
                fg=typer.colors.RED,
                err=True,
            )
            typer.echo(f"Prefect UI: {current.ui_url}/runs/flow-run/{run.id}")
            return 1
        layout = JobLayout.for_job(output_root, job_id)
        try:
            summary = ShootSummary.model_validate_json(storage.read_bytes(layout.summary))
        except FileNotFoundError:  # written on the worker's own disk, not this machine's
            typer.echo(
                f"shoot {job_id} completed; its summary {layout.summary} is not on this "
                f"machine (a worker wrote it on its own disk). Prefect UI: {current.ui_url}"
                f"/runs/flow-run/{run.id} (the run's artifacts hold the summary)"
            )
            return 0
        typer.echo(unescaped(summary_markdown(summary)))
        typer.echo(f"\nledger: {summary.ledger}\nPrefect UI: {current.ui_url}")
        if summary.reviews:
            typer.echo(
                f"reviews: `{invoked_as()} review list`, or Resume each review-cutout run in the UI"
            )
        if current.managed:
            typer.echo(
                f"the local stack keeps running for the UI and the reviews; `{invoked_as()} down` "
                "stops it"
            )
    return 0


def _say_where_local_paths_are(parameters: dict[str, Any], pool: str) -> None:
    """With a stack this command did not start (Prefect's own server, workers elsewhere),
    say that a local path means a path on whichever worker runs the shoot: never silent."""
    local = [
        f"{name} {value}"
        for name, value in parameters.items()
        if name in {"shoot", "manifest", "output_root"} and value and "://" not in str(value)
    ]
    if local:
        typer.secho(
            f"note: {', '.join(local)}: paths on the worker that runs the shoot (work pool "
            f"{pool}), read and written on its own disk; for workers on other machines use "
            "s3:// locations (README, 'Run it on several machines')",
            err=True,
        )


def _with_choices(options: RunOptions, choices: dict[str, str]) -> RunOptions:
    """``options`` with the command line's --model / --rules FILE / --presets FILE."""
    from rules.engine import load_rules, rules_text
    from rules.presets import load_presets, presets_text

    update: dict[str, str] = {}
    if choices.get("model"):
        update["model"] = choices["model"]
    if choices.get("rules"):
        update["rules"] = rules_text(load_rules(Path(choices["rules"])))
    if choices.get("presets"):
        update["presets"] = presets_text(load_presets(Path(choices["presets"])))
    return options.model_copy(update=update)


@app.command()
def run(
    shoot: Annotated[str, typer.Argument(help="Shoot folder (or URI) of images.")],
    job_id: Annotated[str, typer.Option("--job-id", help="Job ID, e.g. SS26-0142.")],
    manifest: Annotated[
        str | None,
        typer.Option(help="Manifest CSV (default: manifest.csv in the shoot folder, if any)."),
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="Output root (default: CUTLINE_OUTPUT_ROOT).")
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Submit the run and return; it goes on without this terminal."
        ),
    ] = False,
    allow_bulk_withdrawal: Annotated[
        bool,
        typer.Option(
            "--allow-bulk-withdrawal",
            help="Withdraw the assets of files that left the shoot even when the folder is "
            "empty or lost most of the job's files at once (refused otherwise).",
        ),
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="Model for this shoot (default: CUTLINE_MODEL).")
    ] = None,
    rules: Annotated[
        str | None,
        typer.Option(help="Rules file for this shoot; sent with the run by content."),
    ] = None,
    presets: Annotated[
        str | None,
        typer.Option(help="Channel presets file for this shoot; sent by content."),
    ] = None,
) -> None:
    """Run one shoot end to end; exits 0 when the run completed, even if some images failed.
    Ctrl-C (or SIGTERM) stops the run; rerunning the same command finishes it. Settings in
    this shell's environment go with the run or must match the host that runs it."""
    choices = {"model": model or "", "rules": rules or "", "presets": presets or ""}
    try:
        code = run_shoot(shoot, job_id, manifest, out, detach, allow_bulk_withdrawal, choices)
    except CutlineError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


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


@models_app.command("fetch")
def models_fetch(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Model name (default: the CUTLINE_MODEL setting and every model the rules "
            "in force name, per category or as the fallback)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if a copy is present.")] = False,
) -> None:
    """Make models available (and md5-verified) in the model home: one by name, or all a
    shoot with the current settings and rules would use (what `scripts/setup.sh` runs, so a
    host with no internet later has every model its rules name)."""
    from rules.engine import load_rules

    settings = get_settings()
    try:
        names = [name] if name else [settings.model]
        if not name:
            names += [m for m in load_rules(settings.rules_file).models_named() if m not in names]
        for each in names:
            spec = model_store.parse_model(each)
            if spec.onnx_path is not None:
                path = model_store.ensure(spec, settings.resolved_model_home)
            else:
                path = model_store.fetch(spec.name, settings.resolved_model_home, force=force)
            typer.echo(f"{spec.label}: {path}")
    except CutlineError as exc:
        raise _fail(exc) from None


@models_app.command("list")
def models_list() -> None:
    """The models Cutline can provision offline: present in the model home, intact (md5),
    and under which licence."""
    settings = get_settings()
    for model in model_store.offline_models(settings.resolved_model_home):
        state = "intact" if model.intact else "CORRUPT" if model.present else "not fetched"
        typer.echo(f"{model.name:8} {state:12} {model.path}")
        typer.echo(f"         licence: {model.licence}")


@dam_app.command("show")
def dam_show(
    dam_id: Annotated[str, typer.Argument(help="Asset id, e.g. cl-1a2b3c...")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    out: Annotated[
        str | None, typer.Option(help="Output root of the shoot (object-store catalog).")
    ] = None,
) -> None:
    """Print one catalog record."""
    from dam_adapters import create_adapter
    from dam_adapters.base import provenance

    try:
        record = create_adapter(get_settings(), out).get(dam_id)
    except KeyError as exc:
        raise _fail(exc.args[0], code=1) from None
    except CutlineError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    data = record.model_dump(mode="json")
    for key in (
        "dam_id",
        "job_id",
        "sku",
        "category",
        "campaign",
        "channels",
        "approval_state",
        "decided_by",
        "note",
        "confidence",
        "reasons",
        "content_hash",
        "source",
        "created_at",
        "updated_at",
        "revision",
    ):
        typer.echo(f"{key:15} {data[key]}")
    made = provenance(record)
    decision = made.decision.value if made.decision else "none (back in review)"
    typer.echo(f"{'lane':15} {made.lane}: {decision} by {made.decided_by or '-'}")
    typer.echo(f"{'signed off by':15} {made.signed_off_by or '-'}")
    typer.echo("history:")
    for change in record.history:
        note = f" ({change['note']})" if change.get("note") else ""
        typer.echo(
            f"  {change.get('at', '')}  {change.get('state', '')} by {change.get('by', '')}{note}"
        )
    typer.echo("renditions:")
    for kind, path in record.renditions.items():
        typer.echo(f"  {kind:15} {path}")


@dam_app.command("adapters")
def dam_adapters_list() -> None:
    """Name the DAM adapters CUTLINE_DAM_ADAPTER accepts."""
    from dam_adapters import known_adapters

    current = get_settings().dam_adapter
    for name in known_adapters():
        typer.echo(f"{name}{'  (selected)' if name == current else ''}")


@dam_app.command("list")
def dam_list(
    job: Annotated[str, typer.Option("--job", help="Job ID.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    out: Annotated[
        str | None, typer.Option(help="Output root of the shoot (object-store catalog).")
    ] = None,
) -> None:
    """List a job's assets in the DAM."""
    from dam_adapters import create_adapter
    from dam_adapters.base import provenance

    records = create_adapter(get_settings(), out).list_job(job)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    if not records:
        typer.echo(f"no assets of job {job} in the DAM")
        return
    typer.echo(
        f"{'DAM ID':23}  {'SKU':20} {'STATE':14} {'LANE: DECIDED BY':28} {'SIGNED OFF BY':16} SOURCE"
    )
    for r in records:
        made = provenance(r)
        lane = f"{made.lane}: {made.decided_by or '-'}"
        typer.echo(
            f"{r.dam_id:23}  {r.sku:20} {r.approval_state.value:14} {lane:28} "
            f"{made.signed_off_by or '-':16} {r.source_name}"
        )


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="Job ID of the shoot.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Progress of a shoot run and how many images wait at each stage."""
    from cutline.ops.status import shoot_status

    with stack.using_stack(get_settings()):
        current = shoot_status(job_id)
    if current is None:
        raise _fail(f"no process-shoot run named {job_id}", code=1)
    if as_json:
        typer.echo(current.model_dump_json(indent=2))
        return
    if current.images is None:  # the run has not planned its batches yet
        typer.echo(
            f"{job_id}: {current.state}; the shoot is not planned yet (images not counted); "
            f"run {current.run_id}"
        )
        return
    progress = "-" if current.progress is None else f"{current.progress:.0f}%"
    typer.echo(
        f"{job_id}: {current.state}, {progress} ({current.images} images, {current.batches} batches)"
    )
    typer.echo(
        f"{'stage':16} {'done':>5} {'running':>8} {'waiting':>8} {'failed':>7} {'images waiting':>15}"
    )
    for s in current.stages:
        typer.echo(
            f"{s.stage:16} {s.completed:5} {s.running:8} {s.waiting:8} {s.failed:7} {s.images_waiting:15}"
        )


@review_app.command("list")
def review_list(
    job: Annotated[str | None, typer.Option("--job", help="Only this job's reviews.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of objects.")] = False,
) -> None:
    """Waiting reviews ordered by deadline, then priority, with the UI link of each."""
    from cutline.services.review_queue import list_reviews

    settings = get_settings()
    with stack.using_stack(settings) as current:
        entries = list_reviews(settings, current.ui_url, job)
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    if not entries:
        typer.echo("no reviews waiting")
        return
    typer.echo(
        f"{'DEADLINE':16}  {'SKU':14} {'CATEGORY':12} {'JOB':12} {'WAITED':>7} {'FLAG':9} RUN ID"
        "\n    why it waits\n    Prefect UI link"
    )
    for e in entries:
        flag = "ESCALATED" if e.escalated else ("OVERDUE" if e.overdue else "")
        if e.state != "Suspended":
            flag = e.state.upper()
        typer.echo(
            f"{(e.deadline or '-')[:16]:16}  {e.sku:14} {e.category or '-':12} {e.job_id:12} "
            f"{e.age_hours:6.1f}h {flag:9} {e.run_id}\n    {e.reasons}\n    {e.ui_url}"
        )


@review_app.command("resume")
def review_resume(
    run_id: Annotated[
        str, typer.Argument(help="Flow run id of the waiting review (see `cutline review list`).")
    ],
    approve: Annotated[bool, typer.Option("--approve", help="Publish with the AI mask.")] = False,
    replace: Annotated[
        str | None, typer.Option("--replace", help="Publish with this retouched file.")
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="Reject and request a reshoot.")] = False,
    note: Annotated[str, typer.Option("--note", help="Note for the DAM record.")] = "",
    by: Annotated[
        str,
        typer.Option(
            "--by", envvar="CUTLINE_RETOUCHER", help="Your name (default: $CUTLINE_RETOUCHER)."
        ),
    ] = "",
    wait: Annotated[bool, typer.Option(help="Wait for the decision to land.")] = True,
) -> None:
    """Decide a waiting review from the terminal, through the same input as the UI form."""
    from cutline.services.review_queue import (
        AnswerNotUsed,
        last_refusal,
        resume_review,
        wait_for_outcome,
    )
    from tasks.review import ReviewDecision

    chosen = [
        name
        for name, on in (("approve", approve), ("replace", replace is not None), ("reject", reject))
        if on
    ]
    if len(chosen) != 1:
        raise _fail("choose exactly one of --approve, --replace FILE, --reject")
    if not by.strip():
        raise _fail("say who decides: --by NAME (or set CUTLINE_RETOUCHER)")
    retouched = replace or ""
    if retouched and "://" not in retouched:
        retouched = str(Path(retouched).expanduser().resolve())  # the review runs elsewhere
    decision = ReviewDecision(decision=chosen[0], retouched_file=retouched, retoucher=by, note=note)
    settings = get_settings()
    with stack.using_stack(settings):
        try:
            resume_review(run_id, decision.model_dump())
        except AnswerNotUsed as lost:
            _report_answer_not_used(lost, "review")
        except Exception as exc:
            raise _fail(f"could not resume review {run_id}: {exc}", code=1) from None
        typer.echo(f"review {run_id} resumed with {chosen[0]}")
        if not wait:
            return
        run = wait_for_outcome(run_id)
        refusal = last_refusal(run_id) if run.state.is_paused() else ""
    if run.state.is_completed():
        typer.echo(
            f"landed: {run.state.name}" + (f": {run.state.message}" if run.state.message else "")
        )
    elif run.state.is_paused():
        _report_refusal(refusal, "review")
    else:
        typer.secho(
            f"review run is {run.state.name}: {run.state.message or ''}", fg="red", err=True
        )
        raise typer.Exit(1)


def _report_refusal(reason: str, kind: str) -> None:
    """Say why the answer was refused (the same text the re-asked form shows); exits 1."""
    reason = reason or "(no reason recorded: see the run's form in the UI)"
    typer.secho(
        f"the answer was not accepted: {reason}\nThe {kind} is waiting again; answer it once "
        "more with that corrected.",
        fg="yellow",
        err=True,
    )
    raise typer.Exit(1)


def _report_answer_not_used(lost, kind: str) -> None:
    """Tell the person whose answer lost the race that it was not used, and what was
    decided instead (waiting for that answer to land); exits 1."""
    from cutline.services.review_queue import describe_answer, read_run, wait_for_outcome

    typer.secho(f"{kind} {lost.run_id}: {lost}", fg="red", err=True)
    run = read_run(lost.run_id)
    if not (run.state.is_paused() or run.state.is_final()):
        run = wait_for_outcome(lost.run_id)
    if run.state.is_completed():
        typer.secho(
            f"decided instead: {describe_answer(lost.used)}"
            + (f" ({run.state.message})" if run.state.message else ""),
            err=True,
        )
    elif run.state.is_paused():
        typer.secho(
            f"that answer ({describe_answer(lost.used)}) could not be used either: the {kind} "
            "waits again; read its form and answer again",
            fg="yellow",
            err=True,
        )
    else:
        typer.secho(
            f"the {kind} run is {run.state.name}: {run.state.message or ''}", fg="red", err=True
        )
    raise typer.Exit(1)


@review_app.command("escalate")
def review_escalate() -> None:
    """Escalate overdue reviews now (the stack also does this every 5 minutes)."""
    from flows.escalate_reviews import escalate_reviews

    with stack.using_stack(get_settings()):
        escalated = escalate_reviews()
    typer.echo(f"escalated {len(escalated)} review(s)")


@signoff_app.command("list")
def signoff_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of objects.")] = False,
) -> None:
    """Shoots waiting for sign-off, newest first, with the UI link of each."""
    from cutline.services.signoff_queue import waiting_signoffs

    with stack.using_stack(get_settings()) as current:
        entries = waiting_signoffs(current.ui_url)
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    if not entries:
        typer.echo("no shoots waiting for sign-off")
    typer.echo(f"{'JOB':16} {'WAITING SINCE':25} RUN ID\n    Prefect UI link")
    for e in entries:
        typer.echo(f"{e.job_id:16} {e.waiting_since:25} {e.run_id}\n    {e.ui_url}")


@signoff_app.command("link")
def signoff_link(
    job: Annotated[str, typer.Argument(help="Job ID of the shoot whose contact sheet to share.")],
    days: Annotated[
        float | None,
        typer.Option("--days", min=0.01, max=365, help="Days the link works (default: setting)."),
    ] = None,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Make every link of the shoot stop working now.")
    ] = False,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="The output root the shoot wrote to, when it is a bucket (s3://...): its "
            "links are presigned URLs of the sheet there.",
        ),
    ] = None,
) -> None:
    """Issue a new client link to a shoot's contact sheet (old links expire on their own),
    or revoke them all."""
    from cutline.services.share import renew_share, revoke_shares

    settings = get_settings()
    if revoke:
        typer.echo(f"revoked {revoke_shares(settings, job, out)} link(s) of shoot {job}")
        return
    try:
        link = renew_share(settings, job, days, out)
    except LookupError as exc:
        raise _fail(exc) from None
    typer.echo(link.describe())


@signoff_app.command("resume")
def signoff_resume(
    job: Annotated[str, typer.Argument(help="Job ID of the shoot to sign off.")],
    approve: Annotated[bool, typer.Option("--approve", help="Sign off every asset.")] = False,
    send_back: Annotated[
        str | None,
        typer.Option("--send-back", help="SKUs to send back to review, comma-separated."),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="For the retoucher of sent-back SKUs.")] = "",
    comment: Annotated[str, typer.Option("--comment", help="Comment kept with the sign-off.")] = "",
    by: Annotated[
        str,
        typer.Option(
            "--by", envvar="CUTLINE_PRODUCER", help="Your name (default: $CUTLINE_PRODUCER)."
        ),
    ] = "",
) -> None:
    """Sign a shoot off from the terminal, through the same input as the UI form."""
    from cutline.services.review_queue import (
        AnswerNotUsed,
        last_refusal,
        resume_review,
        wait_for_outcome,
    )
    from cutline.services.signoff_queue import signoff_run_for
    from tasks.signoff import SignOffDecision

    if approve == (send_back is not None):
        raise _fail("choose exactly one of --approve, --send-back SKU,...")
    if not by.strip():
        raise _fail("say who signs off: --by NAME (or set CUTLINE_PRODUCER)")
    decision = SignOffDecision(
        decision="approve" if approve else "send-back",
        send_back=send_back or "",
        note=note,
        producer=by,
        comment=comment,
    )
    with stack.using_stack(get_settings()) as current:
        entry = signoff_run_for(job, current.ui_url)
        if entry is None:
            raise _fail(
                f"no sign-off is waiting for shoot {job} (see `{invoked_as()} signoff list`)"
            )
        try:
            resume_review(entry.run_id, decision.model_dump())
        except AnswerNotUsed as lost:
            _report_answer_not_used(lost, "sign-off")
        run = wait_for_outcome(entry.run_id)
        refusal = last_refusal(entry.run_id) if run.state.is_paused() else ""
    if run.state.is_completed():
        typer.echo(f"shoot {job} signed off ({decision.decision}) by {by}")
        if run.state.message:
            typer.echo(run.state.message)
        return
    if run.state.is_paused():
        _report_refusal(refusal, "sign-off")
    else:
        typer.secho(
            f"sign-off run is {run.state.name}: {run.state.message or ''}", fg="red", err=True
        )
    raise typer.Exit(1)


@signoff_app.command("reopen")
def signoff_reopen(
    job: Annotated[str, typer.Argument(help="Job ID of the signed-off shoot.")],
    sku: Annotated[
        list[str],
        typer.Option("--sku", help="A SKU to send back to review (repeat for several)."),
    ],
    note: Annotated[
        str, typer.Option("--note", help="For the retoucher: what to fix (required).")
    ] = "",
    by: Annotated[
        str,
        typer.Option(
            "--by", envvar="CUTLINE_PRODUCER", help="Your name (default: $CUTLINE_PRODUCER)."
        ),
    ] = "",
    out: Annotated[
        str | None,
        typer.Option("--out", help="The output root the shoot wrote to (default: setting)."),
    ] = None,
) -> None:
    """Send signed-off assets back to review after client feedback (a run of the
    reopen-assets deployment, the same one the UI's Custom run makes)."""
    from prefect.deployments import run_deployment

    from flows.reopen_assets import REOPEN_DEPLOYMENT

    if not note.strip():
        raise _fail("say what to fix: --note TEXT (the retoucher reads it)")
    if not by.strip():
        raise _fail("say who reopens: --by NAME (or set CUTLINE_PRODUCER)")
    settings = get_settings()
    output_root = storage.locate(out or str(settings.resolved_output_root)).uri()
    parameters = {"job_id": job, "skus": ",".join(sku), "note": note, "producer": by}
    parameters["output_root"] = output_root
    with stack.using_stack(settings) as current:
        run = run_deployment(
            REOPEN_DEPLOYMENT,
            parameters=parameters,
            flow_run_name=f"reopen · {job}",
            tags=["cutline", "signoff", f"job:{job}"],
            as_subflow=False,
        )
        link = f"{current.ui_url}/runs/flow-run/{run.id}"
        if not run.state.is_completed():
            message = run.state.message or run.state.name
            raise _fail(f"nothing reopened: {message}\nPrefect UI: {link}", code=1)
    typer.echo(run.state.message)
    typer.echo(f"Prefect UI: {link}; the reviews: `{invoked_as()} review list`")


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the Python traceback of an error.")
    ] = False,
) -> None:
    """Cutline: studio-scale AI background removal on Prefect."""
    _DEBUG["on"] = debug


def main() -> None:
    """Console entry point: an error Cutline explains (bad settings, a wrong path, a refused
    run) is one line on stderr with exit code 2; an unexpected one is one line with exit
    code 1. `cutline --debug ...` adds the traceback. Nothing printed can steer the
    terminal (`cutline.ops.terminal`)."""
    guard_standard_streams()
    try:
        app(prog_name="cutline", standalone_mode=True)  # usage errors: typer's own message
    except CutlineError as exc:
        if _DEBUG["on"]:
            traceback.print_exc()
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except Exception as exc:  # one readable line; the traceback on --debug
        if _DEBUG["on"]:
            traceback.print_exc()
        typer.secho(
            f"error: {type(exc).__name__}: {redact(str(exc))[:500]}\n"
            "hint: run the same command with `cutline --debug ...` for the traceback, and "
            "report it if the message does not say what to do.",
            fg=typer.colors.RED,
            err=True,
        )
        sys.exit(1)
    sys.exit(0)
