"""`cutline run` and `cutline status`: submit a shoot, follow it through outages and signals, stop it, see its progress."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cutline.base import storage
from cutline.base.errors import ConfigError, CutlineError
from cutline.base.markdown import unescaped
from cutline.base.settings import get_settings
from cutline.ops import stack
from cutline.ops.terminal import invoked_as

if TYPE_CHECKING:
    from cutline.domain.run_options import RunOptions

from cutline.ops.cli.app import (
    _fail,
    app,
)

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
