"""signoff-shoot: one suspended run per shoot, waiting for the producer's sign-off form."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import suspend_flow_run
from prefect.input import read_flow_run_input
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, State

from cutline.base import storage
from cutline.base.settings import CutlineSettings, get_settings
from cutline.domain.items import JobLayout, validate_job_id
from cutline.domain.locations import check_location
from cutline.domain.run_config import RunConfig
from cutline.imaging.contact_sheet import (
    STUDIO_SHEET,
    Audience,
    ContactSheet,
    build_contact_sheet,
    client_sheet_folder,
    new_sheet_id,
)
from cutline.records.ledger import own_cutouts, read_ledger
from cutline.records.summary import artifact_key
from cutline.services.signoff_queue import newer_signoff
from cutline.services.waiting_run import waiting_keyset
from dam_adapters import create_adapter
from rules.presets import PresetBook, load_presets
from tasks.run_inputs import judged_once, once, remembered
from tasks.signoff import (
    ShownAsset,
    SignOffDecision,
    SignOffOutcome,
    client_link,
    job_dam_settings,
    land_signoff,
    request_signoff,
    shown_assets,
    signoff_description,
    signoff_message,
    validate_signoff,
    with_problem,
)


@flow(name="signoff-shoot", persist_result=True, log_prints=True)
def signoff_shoot(job_id: str, output_root: str) -> SignOffOutcome | State:
    """Build the shoot's contact sheet from the DAM, then wait (suspended, holding no
    process) for the producer to approve it or send SKUs back to review.

    Args:
        job_id: The shoot's job ID.
        output_root: The output root the shoot wrote to (its job folder holds the sheet).
    """
    validate_job_id(job_id)
    check_location(output_root, "output root")
    settings = get_settings()
    logger = get_run_logger()
    layout = JobLayout.for_job(output_root, job_id)
    run_id = str(flow_run.get_id())
    # The sheet, the form's text and the assets they show are made once: a resumed run replays
    # from the top, and must land the answer on what the producer saw, not on what the DAM
    # holds by then (a review decided meanwhile waits for the next sign-off).
    shown = remembered("sheet-shown", lambda: _show(settings, layout, job_id, output_root, run_id))
    sheet = ContactSheet(**shown["sheet"])
    assets = [ShownAsset.model_validate(asset) for asset in shown["assets"]]
    client_index = shown.get("client_index", sheet.index)  # a run waiting since before 2026-12
    link = remembered("client-link", lambda: _share(settings, job_id, client_index))
    if once("sheet-artifact"):
        create_markdown_artifact(
            markdown=shown["description"],
            key=f"{artifact_key(job_id)}-contact-sheet",
            description=f"Contact sheet of shoot {job_id}",
        )
    problem, attempt, previous = "", 0, {}
    while True:
        answered = read_flow_run_input(waiting_keyset(f"signoff-{attempt}")["response"])
        newer = None if answered is not None else newer_signoff(job_id, run_id)
        if newer:  # a newer contact sheet was requested meanwhile: never two forms
            logger.info("Sign-off of %s superseded by sign-off run %s", job_id, newer)
            return Cancelled(message=f"superseded by sign-off run {newer}")
        form = SignOffDecision.with_initial_data(
            description=with_problem(shown["description"], problem),
            **previous,  # no default decision; asked again, the refused answer is kept
        )
        decision = suspend_flow_run(wait_for_input=form, key=f"signoff-{attempt}", timeout=None)
        problem = judged_once(
            f"verdict-{attempt}",
            lambda: validate_signoff(decision, assets),  # noqa: B023
        )
        if not problem:
            break
        logger.warning("Sign-off answer for %s rejected: %s", job_id, problem)
        previous = decision.model_dump(include=set(SignOffDecision.model_fields))
        attempt += 1
    outcome = land_signoff(decision, job_id, output_root, sheet, link.get("url", ""), assets)
    return Completed(
        message=signoff_message(outcome, _next_signoff(outcome, output_root, run_id)), data=outcome
    )


def _job_presets(layout: JobLayout, settings: CutlineSettings) -> PresetBook:
    """The channel presets the job's last run rendered with (its run config), not whatever
    file this host has at the same path; this host's file only for a job without one."""
    if storage.exists(layout.run_config):
        config = RunConfig.model_validate_json(storage.read_bytes(layout.run_config))
        return config.preset_book()
    return load_presets(settings.presets_file)


def _show(
    settings: CutlineSettings, layout: JobLayout, job_id: str, output_root: str, run_id: str
) -> dict:
    """Make the contact sheets from the DAM's records now, and the form's text: what this
    sign-off shows, and so covers (the signable assets at the revisions shown). The studio's
    sheet is the job's current one; the client's is this sign-off's own (see
    ``client_sheet_folder``): a link given to a client never changes under them."""
    records = create_adapter(job_dam_settings(layout, settings), output_root).list_job(job_id)
    cutouts = own_cutouts(layout)  # thumbnails from our files, never from DAM-given URLs
    presets = _job_presets(layout, settings)

    def sheet_for(audience: Audience, folder: str) -> ContactSheet:
        return build_contact_sheet(
            records,
            job_id,
            folder,
            presets,
            lambda record: cutouts.get((record.source_name, record.content_hash)),
            audience,
        )

    studio_folder = storage.join(layout.root, STUDIO_SHEET)
    sheet = sheet_for("studio", studio_folder)  # the form links it: lanes, scores, names
    client = sheet_for("client", client_sheet_folder(layout.root, new_sheet_id(run_id)))
    ledger_rows = read_ledger(layout.ledger) if storage.exists(layout.ledger) else None
    link = remembered("client-link", lambda: _share(settings, job_id, client.index))
    shared = link.get("text", "") if link else ""
    return {
        "sheet": asdict(sheet),
        "description": signoff_description(job_id, records, sheet, shared, "", ledger_rows),
        "assets": [asset.model_dump(mode="json") for asset in shown_assets(records)],
        "client_index": client.index,
    }


def _next_signoff(outcome: SignOffOutcome, output_root: str, run_id: str) -> str:
    """For assets this sign-off left out: who will show them to the producer. The shoot's
    last review asks for the next sign-off when it is decided; with no review open and no
    newer sign-off, one is asked for now."""
    from cutline.services.review_queue import waiting_runs

    if not outcome.left_out:
        return ""
    job_id = outcome.job_id
    try:
        if waiting_runs(job_id):
            return (
                "The next sign-off, asked for when the shoot's last review is decided, shows them."
            )
        newer = newer_signoff(job_id, run_id)
        if newer is None:
            newer = request_signoff(
                job_id, output_root, reason=f"left-out:{run_id}", keep=run_id
            ).run_id
        return f"Sign-off run {newer} shows them." if newer else ""
    except Exception as exc:  # signed off; the next sign-off can be asked for by a rerun
        get_run_logger().warning("Could not ask for the next sign-off of %s: %s", job_id, exc)
        return (
            f"Asking for the next sign-off failed ({type(exc).__name__}); rerun the shoot to "
            "ask again."
        )


def _share(settings: CutlineSettings, job_id: str, sheet_index: str) -> dict[str, str]:
    """One client link per sign-off run (a resumed run replays, it must not issue another)."""
    return client_link(settings, job_id, sheet_index)
