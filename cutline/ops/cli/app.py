"""The `cutline` command's Typer apps (one per noun), its error reporting and its entry point."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, Any

import typer

from cutline.base.errors import CutlineError
from cutline.base.redact import redact
from cutline.ops.terminal import guard_standard_streams

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


def _report_not_landed(run: Any, refusal: str, kind: str) -> typer.Exit:
    """A resumed run that did not land: why its answer was refused (it waits again), or the
    state it ended in. Always exits 1."""
    if run.state.is_paused():
        _report_refusal(refusal, kind)
    typer.secho(f"{kind} run is {run.state.name}: {run.state.message or ''}", fg="red", err=True)
    return typer.Exit(1)


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
