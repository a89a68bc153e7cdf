"""`cutline up`, `down`, `stack-status` and `task-worker`: the local stack and worker hosts."""

from __future__ import annotations

from typing import Annotated

import typer

from cutline.base.errors import CutlineError
from cutline.base.settings import get_settings
from cutline.ops import stack
from cutline.ops.cli.app import (
    _fail,
    app,
)
from cutline.ops.terminal import invoked_as


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
