"""`cutline review`: the review queue, resuming a review, escalation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cutline.base.settings import get_settings
from cutline.ops import stack
from cutline.ops.cli.app import (
    _fail,
    _report_answer_not_used,
    _report_not_landed,
    review_app,
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
    else:
        raise _report_not_landed(run, refusal, "review")


@review_app.command("escalate")
def review_escalate() -> None:
    """Escalate overdue reviews now (the stack also does this every 5 minutes)."""
    from flows.escalate_reviews import escalate_reviews

    with stack.using_stack(get_settings()):
        escalated = escalate_reviews()
    typer.echo(f"escalated {len(escalated)} review(s)")
