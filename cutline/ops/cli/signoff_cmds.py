"""`cutline signoff`: the producer's sign-off, client links, reopening signed-off assets."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cutline.base import storage
from cutline.base.settings import get_settings
from cutline.ops import stack
from cutline.ops.cli.app import (
    _fail,
    _report_answer_not_used,
    _report_not_landed,
    signoff_app,
)
from cutline.ops.terminal import invoked_as


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
    raise _report_not_landed(run, refusal, "sign-off")


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
