"""process-shoot: one flow run per shoot; its batches stream through the stages of tasks.stages."""

from __future__ import annotations

import os
import posixpath
import socket
import time
import uuid
from collections.abc import Callable

import botocore.exceptions
from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL
from prefect.task_runners import ThreadPoolTaskRunner

from cutline.base import storage
from cutline.base.errors import ConfigError
from cutline.base.markdown import inert, shortened, unescaped
from cutline.base.settings import BatchRunner, CutlineSettings, get_settings
from cutline.domain import residency
from cutline.domain.items import JobLayout, validate_job_id
from cutline.domain.locations import check_location
from cutline.domain.manifest import is_manifest_row
from cutline.domain.residency import ResidencyReport
from cutline.domain.run_config import RunConfig
from cutline.domain.run_options import RunOptions, refuse_other_host_settings
from cutline.imaging import model_store
from cutline.records.cost import cost_report, time_chart_markdown, time_chart_png
from cutline.records.ledger import read_ledger
from cutline.records.summary import (
    FILE_WIDTH,
    REASON_WIDTH,
    ShootSummary,
    artifact_key,
    progress_description,
    summarize,
    summary_markdown,
)
from cutline.records.tally import ShootTally
from cutline.services.job_lock import one_run_per_job, refuse_similar_jobs
from cutline.services.limits import ensure_limits
from cutline.services.review_queue import cancel_reviews_of_gone_files
from cutline.services.stranded_runs import recover_stranded_runs
from dam_adapters import DamAdapter, create_adapter
from flows.batches_on_task_workers import run_batches_on_task_workers
from flows.batches_on_workers import run_batches_on_workers
from flows.outcomes import (
    BatchOutcome,
    PlannedImage,
    ShootIncomplete,
    incomplete_error,
    settle_batch,
    write_ledger_safely,
)
from flows.streaming import stream_batches
from tasks.context import BatchRef, ShootContext
from tasks.ingest import plan_shoot
from tasks.register import refuse_lost_shoot, reinstate_restored_assets, withdraw_stale_assets
from tasks.review_board import refresh_review_queue
from tasks.signoff import request_signoff
from tasks.stages import MODEL_STAGE_INDEXES, stage_tasks


def _run_batches_here(
    refs: list[BatchRef],
    planned: list[list[PlannedImage]],
    ctx: ShootContext,
    report: Callable[[float], None],
    tally: ShootTally,
) -> list[BatchOutcome]:
    """Every batch through the stage tasks in this process's thread pool, streaming: a batch
    moves on as soon as its stage is done, ``workers`` batches are cut out at once while as
    many go through the other stages. Tasks pass batch handles, the records stay in the job
    folder. Each batch is read back into the tally as soon as it is through, so a later
    storage outage cannot hide finished work and the flow never holds every record at once."""
    outcomes: dict[int, BatchOutcome] = {}

    def settle(index: int, problem: str | None) -> None:
        outcomes[index] = settle_batch(refs[index], planned[index], problem, tally)

    stream_batches(
        refs,
        stage_tasks(ctx.config),
        ctx,
        slots=ctx.config.workers,
        on_settled=settle,
        on_progress=report,
        order=ctx.config.batch_order,
        model_stages=MODEL_STAGE_INDEXES,
        model_slots=ctx.config.workers,
    )
    return [outcomes[index] for index in range(len(refs))]


MANIFEST_NAME = "manifest.csv"
PROGRESS_SECONDS = 2.0  # the shoot's progress bar in the UI is updated at most this often


def find_manifest(shoot: str, manifest: str | None) -> str | None:
    """The manifest a shoot runs with: the one given, else ``SHOOT/manifest.csv`` when the
    shoot folder has one, whoever started the run (CLI, the UI's Custom run, a Retry)."""
    if manifest:
        return storage.locate(manifest).uri()
    candidate = storage.join(storage.locate(shoot).uri(), MANIFEST_NAME)
    return candidate if storage.exists(candidate) else None


def unused_csv_warnings(ignored: list[str], manifest: str | None) -> list[str]:
    """A warning for every CSV in the shoot folder that was not read as the manifest: a
    producer who meant it as one would otherwise lose every category, deadline and brief."""
    return [
        f"{uri} was not used as the manifest"
        + (f" (the manifest is {manifest})" if manifest else " (this run has no manifest)")
        + f": name it {MANIFEST_NAME} in the shoot folder or pass it as the manifest parameter "
        "(`cutline run --manifest`), then rerun the job."
        for uri in ignored
        if uri.lower().endswith(".csv") and not posixpath.basename(uri).startswith(".")
    ]


def refuse_output_inside_shoot(shoot: str, output_root: str) -> None:
    """Refuse an output root in the shoot folder: every rerun would take Cutline's own
    renditions, masks and contact sheet for new images of the shoot."""
    inner, outer = storage.real_uri(output_root), storage.real_uri(shoot)
    if inner == outer or inner.startswith(outer.rstrip("/") + "/"):
        raise ConfigError(
            f"The output root {output_root} is inside the shoot folder {shoot}: a rerun would "
            "ingest Cutline's own outputs as new images.",
            hint="Choose an output root outside the shoot folder (--out or CUTLINE_OUTPUT_ROOT).",
        )


def preflight(
    job_id: str,
    shoot: str,
    manifest: str | None,
    output_root: str,
    settings: CutlineSettings | None = None,
    options: RunOptions | None = None,
) -> tuple[RunConfig, str, DamAdapter, ResidencyReport]:
    """Refuse to start, before any image is read, when the inputs or setup are wrong:
    job ID, shoot folder (readable with this host's credentials), manifest, rules, presets,
    model (md5), DAM adapter, residency.

    Returns the run's frozen configuration, the model label, the DAM adapter and the
    residency report. ``settings`` are the run's (this host's, with the run's options laid
    over them); by default this process's.
    """
    settings = settings or get_settings()
    options = options or RunOptions()
    validate_job_id(job_id)
    refuse_similar_jobs(job_id)
    check_location(shoot, "shoot", settings)
    if manifest:
        check_location(manifest, "manifest", settings)
    loc = storage.locate(shoot)
    if not readable_folder(loc, shoot):
        raise ConfigError(
            f"Shoot folder {shoot} does not exist or is not a folder.", hint="Check the path."
        )
    refuse_output_inside_shoot(shoot, output_root)
    if manifest and not storage.exists(manifest):
        raise ConfigError(f"Manifest {manifest} does not exist.", hint="Check the --manifest path.")
    rules, rules_source = options.rule_set(settings)
    presets, presets_source = options.preset_book(settings)
    adapter = create_adapter(settings, output_root)
    roles = {"shoot": storage.locate(shoot).uri(), "output": storage.locate(output_root).uri()}
    if settings.dam_adapter == "object-store":
        roles["catalog"] = adapter.root  # type: ignore[attr-defined]
    report = residency.assess(
        settings, roles, settings.dam_http_base_url if settings.dam_adapter == "http" else None
    )
    spec = model_store.parse_model(settings.model)
    model_store.ensure(spec, settings.resolved_model_home)
    for chosen in rules.models_named():  # the rules' model per category, on this host too
        model_store.ensure(model_store.parse_model(chosen), settings.resolved_model_home)
    ensure_limits(settings)
    check_writable_output(output_root, job_id)
    config = RunConfig.freeze(
        settings, rules, presets, rules_source=rules_source, presets_source=presets_source
    )
    return config, spec.label, adapter, report


def check_writable_output(output_root: str, job_id: str) -> None:
    """Write and remove a small file in the job's folder, so that a host whose credentials
    (or disk) cannot write the outputs says so before any image is read, instead of every
    image failing at export. A job folder made only for the check is removed again."""
    job_root = storage.join(output_root, job_id)
    probe = storage.join(job_root, f".cutline-write-check-{uuid.uuid4().hex}")
    loc = storage.locate(job_root)
    made = loc.is_local and not os.path.exists(loc.path)
    try:
        storage.write_bytes(probe, b"")
        storage.locate(probe).fs.rm(storage.locate(probe).path)
        if made:
            os.rmdir(loc.path)
    except (OSError, botocore.exceptions.BotoCoreError) as exc:
        raise ConfigError(
            f"The host running this shoot, {socket.gethostname()}, cannot write its outputs to "
            f"{output_root} with its own credentials or disk: {type(exc).__name__}: {exc}.",
            hint="Give the process that runs shoots (the stack's worker or another host's) "
            "credentials that can write the output root (CUTLINE_S3_* or an AWS profile), or "
            "choose a writable --out; credentials are never sent with a run. Nothing was "
            "processed.",
        ) from None


def readable_folder(loc: storage.Location, shoot: str) -> bool:
    """Whether the shoot folder exists; a store that refuses this host's credentials is a
    setup error of this host, said as such (credentials never travel with a run)."""
    try:
        return bool(loc.fs.isdir(loc.path))
    except (PermissionError, botocore.exceptions.NoCredentialsError) as exc:
        raise ConfigError(
            f"The host running this shoot, {socket.gethostname()}, cannot read {shoot} with "
            f"its own credentials: {exc}.",
            hint="Give the process that runs shoots (the stack's worker or another host's) "
            "S3 credentials that can read the shoot and write the outputs "
            "(CUTLINE_S3_ACCESS_KEY_ID / CUTLINE_S3_SECRET_ACCESS_KEY or an AWS profile); "
            "credentials are never sent with a run.",
        ) from None


@flow(
    name="process-shoot",
    flow_run_name="{job_id}",
    # The stream keeps at most 2 x CUTLINE_WORKERS stage tasks in flight; the pool only runs them.
    task_runner=ThreadPoolTaskRunner(max_workers=64),
    log_prints=True,
)
def process_shoot(
    shoot: str,
    job_id: str,
    manifest: str | None = None,
    output_root: str | None = None,
    allow_bulk_withdrawal: bool = False,
    options: RunOptions | None = None,
) -> ShootSummary:
    """Cut out, score, route, export and register every image of one shoot.

    Every input file ends in exactly one lane (auto, review, failed) with a reason,
    recorded in <output>/<job>/ledger.csv; the run fails loudly if it cannot prove that.

    Args:
        shoot: Folder (or URI) holding the shoot's images, e.g. /mnt/shoots/SS26-0142.
        job_id: Job ID, e.g. SS26-0142; names the run, the output folder and the DAM records.
        manifest: Manifest CSV (filename, sku, category, campaign, channels, deadline,
            brief, reference). Empty: manifest.csv in the shoot folder, if there is one.
        output_root: Where outputs go; empty means the CUTLINE_OUTPUT_ROOT setting.
        allow_bulk_withdrawal: Withdraw the assets of files that left the shoot even when the
            shoot folder is empty or lost most of the job's files at once (otherwise the run
            refuses: an unmounted card or a half-copied share must not withdraw anything).
        options: Settings chosen for this shoot (model, rules, presets, batching); empty
            ones are the executing host's. `cutline run` fills them from its environment.
    """
    started = time.perf_counter()
    logger = get_run_logger()
    options = options or RunOptions()
    if options.host_settings:
        refuse_other_host_settings(options.host_settings, get_settings())
    settings = options.settings_for(get_settings())
    out_root = output_root or str(settings.resolved_output_root)
    check_location(out_root, "output root", settings)
    out_root = storage.locate(out_root).uri()
    checked = preflight(job_id, shoot, manifest, out_root, settings, options)
    run_id = flow_run.get_id()

    def waiting(others: list[str]) -> None:
        logger.warning(
            "Job %s is being run by %s; this run starts when that one ends (one run per job)",
            job_id,
            ", ".join(others) or "another run",
        )

    with one_run_per_job(job_id, run_id, settings.job_wait_minutes * 60, waiting):
        return _run_shoot(
            shoot,
            job_id,
            manifest,
            out_root,
            started,
            checked,
            settings,
            allow_bulk_withdrawal,
        )


def _run_shoot(
    shoot: str,
    job_id: str,
    manifest: str | None,
    out_root: str,
    started: float,
    checked: tuple[RunConfig, str, DamAdapter, ResidencyReport],
    settings: CutlineSettings,
    allow_bulk_withdrawal: bool = False,
) -> ShootSummary:
    """The shoot itself, run while this run holds the job (see ``one_run_per_job``)."""
    logger = get_run_logger()
    config, model_label, adapter, where = checked
    rules_version = config.rules_fingerprint
    for stranded in recover_stranded_runs(settings.stranded_after_seconds, job_id):
        # a review of this job left Running by a crash would otherwise be reattached as is
        logger.warning(
            "%s %s run %s: its process had stopped", stranded.action, stranded.flow, stranded.name
        )
    manifest = find_manifest(shoot, manifest)
    logger.info("Manifest: %s", manifest or "none")
    logger.info("Cutline %s: every batch runs on this code or is refused", config.code_version)
    logger.info(where.describe())
    layout = JobLayout.for_job(out_root, job_id)
    ctx = ShootContext(
        job_id=job_id,
        shoot=storage.locate(shoot).uri(),
        output_root=out_root,
        job_root=layout.root,
        config=config,
    )
    storage.write_bytes(layout.run_config, config.model_dump_json(indent=2).encode("utf-8"))
    plan = plan_shoot(ctx, manifest, config.batch_size)  # writes the batch records
    refs, planned, inputs = plan.refs, plan.planned, plan.inputs
    ignored, unused_rows = plan.ignored, plan.manifest_rows_without_files
    # An empty or mostly emptied shoot (a card not mounted) stops here, before its ledger is
    # rewritten or any asset withdrawn.
    files = {p.source_name for batch in planned for p in batch if not is_manifest_row(p.source)}
    refuse_lost_shoot(adapter, job_id, ctx.shoot, files, allow_bulk_withdrawal)
    logger.info("Shoot %s: %d input files, %d ignored", job_id, len(inputs), len(ignored))
    warnings = unused_csv_warnings(ignored, manifest)
    for warning in warnings:
        logger.warning(warning)
    progress = create_progress_artifact(
        progress=0.0,
        key=f"{artifact_key(job_id)}-progress",
        description=progress_description(len(inputs), len(refs), plan.batch_size),
    )

    shown = {"percent": 0.0, "at": 0.0}

    def report(fraction: float) -> None:
        # One update every PROGRESS_SECONDS at most, and none that changes nothing: each is a
        # write on the server (a 20,000-image shoot ends some 9,000 stage tasks).
        percent, now = round(100.0 * fraction, 1), time.monotonic()
        if percent == shown["percent"] or (
            percent < 100.0 and now - shown["at"] < PROGRESS_SECONDS
        ):
            return
        shown.update(percent=percent, at=now)
        update_progress_artifact(progress, progress=percent)

    with ShootTally(settings.data_root / "tmp") as tally:
        if settings.batch_execution == BatchRunner.FLOW_RUNS:
            outcomes = run_batches_on_workers(
                refs, planned, ctx, settings.batch_deployment, report, tally
            )
        elif settings.batch_execution == BatchRunner.TASK_WORKERS:
            outcomes = run_batches_on_task_workers(refs, planned, ctx, report, tally)
        else:
            outcomes = _run_batches_here(refs, planned, ctx, report, tally)
        ledger_uri, ledger_problem = write_ledger_safely(tally, layout, job_id)
        lanes = tally.check(inputs)
        if any(outcome.problem for outcome in outcomes):
            error = incomplete_error(job_id, outcomes, ledger_uri, ledger_problem)
            _publish_incomplete(job_id, error, tally)
            raise error
        summary = summarize(
            tally,
            lanes,
            job_id=job_id,
            shoot=ctx.shoot,
            ledger=ledger_uri,
            wall_seconds=time.perf_counter() - started,
            ignored=ignored,
            unused_rows=unused_rows,
            model=model_label,
            rules_version=rules_version,
            dam=adapter.describe(),
            residency=where.describe(),
        )
        summary.cost = cost_report(tally, summary.wall_seconds, settings)
        summary.manifest, summary.warnings = manifest or "", warnings
        summary.code_version = config.code_version
        summary.ui_url = PREFECT_UI_URL.value() or settings.ui_url
        versions = tally.versions()
        summary.withdrawn = [
            f"{r.sku} ({r.source_name}): {r.note}"
            for r in withdraw_stale_assets(
                adapter, job_id, versions, shoot=ctx.shoot, allow_bulk=allow_bulk_withdrawal
            )
        ]
        for r in reinstate_restored_assets(adapter, job_id, lambda: read_ledger(ledger_uri)):
            logger.info(
                "%s (%s) is back in the shoot: asset %s is %s again",
                r.sku,
                r.source_name,
                r.dam_id,
                r.approval_state.value,
            )
        for run_id in cancel_reviews_of_gone_files(job_id, versions):
            logger.warning("Cancelled review run %s: its image left the shoot or changed", run_id)
        try:
            asked = request_signoff(
                job_id, out_root, reason=f"shoot:{flow_run.get_id()}:{flow_run.run_count}"
            )
            summary.signoff_run_id, summary.signoff_note = asked.run_id, asked.why_not_new
            if asked.why_not_new:
                logger.info("Sign-off of %s: %s", job_id, asked.why_not_new)
        except Exception as exc:  # the shoot is done; sign-off can be requested by hand
            logger.warning("Could not request sign-off for %s: %s", job_id, exc)
        if summary.signoff_run_id:
            summary.contact_sheet = storage.join(layout.root, "contact-sheet", "index.html")
        chart = time_chart_png(summary.cost, job_id)
        summary.time_chart = storage.write_bytes(storage.join(layout.root, "time-chart.png"), chart)
        create_markdown_artifact(
            markdown=time_chart_markdown(summary.cost, job_id, chart),
            key=f"{artifact_key(job_id)}-time-chart",
            description=f"Shoot {job_id}: AI lane against review lane minutes",
        )
        _publish_artifacts(summary, tally)
        if why := refresh_review_queue(job_id, new=True):
            logger.warning("%s", why)
    storage.write_bytes(layout.summary, summary.model_dump_json(indent=2).encode("utf-8"))
    logger.info("Shoot %s done: %s; ledger %s", job_id, dict(lanes), ledger_uri)
    return summary


def _publish_incomplete(job_id: str, error: ShootIncomplete, tally: ShootTally) -> None:
    """Tell the UI why the shoot stopped and which images are not finished."""
    create_markdown_artifact(
        markdown=f"# Shoot {job_id} did not finish\n\n{inert(error.message)}\n\n"
        f"**Next:** {inert(error.hint)}\n",
        key=artifact_key(job_id),
        description=f"Shoot {job_id} (incomplete)",
    )
    _publish_table(job_id, tally)


def _publish_artifacts(summary: ShootSummary, tally: ShootTally) -> None:
    create_markdown_artifact(
        markdown=summary_markdown(summary),
        key=artifact_key(summary.job_id),
        description=f"Shoot {summary.job_id}",
    )
    _publish_table(summary.job_id, tally)


def _publish_table(job_id: str, tally: ShootTally) -> None:
    """The per-image table artifact. The Prefect UI renders its cells as markdown, so every
    text cell (file names, SKUs, reasons from the manifest) is made inert."""
    widths = {"file": FILE_WIDTH, "reasons": REASON_WIDTH}
    shown = [
        {
            key: inert(shortened(value, widths.get(key, 64), middle=key == "file"))
            if isinstance(value, str)
            else value
            for key, value in row.items()
        }
        for row in tally.table_rows()
    ]
    create_table_artifact(
        table=shown,
        key=f"{artifact_key(job_id)}-images",
        description=(
            f"Every image of shoot {job_id} and its lane"
            if len(shown) == tally.total
            else f"First {len(shown)} of {tally.total} images of shoot {job_id}; see the ledger for all"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """Run one shoot in this process, as a worker's flow-run process does (no deployment):
    for scripts and tests that must own the process, e.g. to kill it mid-shoot. Prints the
    summary; exit 1 with the reason when the run did not complete."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m flows.process_shoot")
    parser.add_argument("shoot")
    parser.add_argument("job_id")
    parser.add_argument("--manifest")
    parser.add_argument("--out")
    parser.add_argument("--allow-bulk-withdrawal", action="store_true")
    args = parser.parse_args(argv)
    try:
        state = process_shoot(
            shoot=args.shoot,
            job_id=args.job_id,
            manifest=args.manifest,
            output_root=args.out,
            allow_bulk_withdrawal=args.allow_bulk_withdrawal,
            return_state=True,
        )
    except KeyboardInterrupt:  # Ctrl-C: the engine has marked the run; say what to do
        print(
            f"stopped: shoot {args.job_id} was interrupted; finished images are kept, run the "
            "same command again to finish it",
            file=sys.stderr,
        )
        return 130
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        print(f"error: shoot {args.job_id} ended {state.name}: {error}", file=sys.stderr)
        return 1
    print(unescaped(summary_markdown(state.result())))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised by the fault tests' subprocesses
    raise SystemExit(main())
