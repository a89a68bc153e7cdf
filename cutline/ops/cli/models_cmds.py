"""`cutline models`: fetch and list the background-removal models."""

from __future__ import annotations

from typing import Annotated

import typer

from cutline.base.errors import CutlineError
from cutline.base.settings import get_settings
from cutline.imaging import model_store
from cutline.ops.cli.app import (
    _fail,
    models_app,
)


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
