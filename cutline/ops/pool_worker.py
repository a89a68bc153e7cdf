"""The stack's worker: Prefect's process worker on the stack's work pool, Cutline's services
beside it.

`cutline up` starts this in the background, so one machine runs the production topology that
several do (README, "Run it on several machines"): Prefect's server, a process work pool, the
deployments of prefect.yaml on that pool (with its pull steps) and a worker polling it. Every
flow run (a shoot, a review once resumed, a sign-off) is a process the worker starts, with the
pool's job variables applied as Prefect documents them: a Custom run's or a deployment's
``env`` reaches the run, and schedules, Retry and Resume behave as on any Prefect worker.

Beside the worker, in the same process: the share server of review pages and contact sheets,
the housekeeping loop (escalations, stranded runs) and the cancel watch, which looks at this
process's children, the flow-run processes the worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from cutline.base.settings import PROJECT_ROOT, CutlineSettings, get_settings
from cutline.ops.cancel_watch import start_cancel_watch
from cutline.ops.deployments import register_on_pool
from cutline.ops.stack import pool_worker_name
from cutline.services.housekeeping import start_housekeeping
from cutline.services.share import start_share_server


def ensure_pool(name: str) -> None:
    """Create process work pool ``name`` with Prefect's default job template, unless the
    server has it (one made or edited in the UI is left as it is)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectNotFound):
            client.read_work_pool(name)
            return
        # Another host's worker may make it a moment before this one.
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=ProcessWorker.type,
                    description="Cutline's flow runs; `cutline up` starts a worker polling it.",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )


async def _work(settings: CutlineSettings) -> None:
    from prefect.workers.process import ProcessWorker

    async with ProcessWorker(
        work_pool_name=settings.work_pool, name=pool_worker_name(os.getpid())
    ) as worker:
        await worker.start()


def main() -> None:
    """Register the deployments on the pool and run its flow runs until stopped."""
    os.chdir(PROJECT_ROOT)
    settings = get_settings()
    try:
        start_share_server(settings)
    except OSError as exc:  # the port is taken: sign-off still works, without client links
        print(f"contact-sheet links unavailable on port {settings.resolved_share_port}: {exc}")
    start_housekeeping(settings, os.environ.get("PREFECT_UI_URL") or settings.ui_url)
    start_cancel_watch(settings.runner_poll_seconds)  # Cancel still works after a server outage
    ensure_pool(settings.work_pool)
    _, registered = register_on_pool(settings.work_pool)
    if registered:
        print(f"Registered from prefect.yaml: {', '.join(registered)}", flush=True)
    print(f"Worker polling work pool {settings.work_pool!r}", flush=True)
    asyncio.run(_work(settings))


if __name__ == "__main__":
    main()
