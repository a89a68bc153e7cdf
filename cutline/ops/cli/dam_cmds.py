"""`cutline dam`: the DAM catalog, its records and adapters."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cutline.base.errors import CutlineError
from cutline.base.settings import get_settings
from cutline.ops.cli.app import (
    _fail,
    dam_app,
)


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
