"""What thousands of waiting reviews cost an idle server, by how often it checks pause timeouts.

    python -m benchmarks.waiting_idle [--waiting 3000] [--seconds 60] [--check-seconds 120]

One PostgreSQL-backed stack (server and worker process). Its idle CPU is measured over
``seconds`` with no run at all, then ``waiting`` review-cutout runs are created waiting for a
retoucher (`cutline.services.waiting_run`, as a shoot's review stage makes them, without forms:
nothing here resumes them), and the idle CPU is measured again with the stack restarted on the
same database in turn with Prefect's default pause-expiry check (every 5 s) and with Cutline's
(`server_pause_expiry_check_seconds`, ``check-seconds``), twice each, alternating. Prefect's
check reads every paused run each time it looks, so its cost grows with the reviews waiting,
which wait for days in a studio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import bench_settings, idle_cpu_rate, median, write_result

PREFECT_DEFAULT_CHECK_SECONDS = 5.0


def idle_cpu_per_minute(seconds: float) -> float:
    """CPU seconds per minute of the stack's server and worker process while nothing runs."""
    from cutline.base.settings import get_settings
    from cutline.ops import stack

    settings = get_settings()
    pids = [stack.status(settings).pid, stack.worker_pid(settings)]
    assert all(pids), "the benchmark needs the stack's own server and worker process"
    time.sleep(10)  # past the start-up work
    return idle_cpu_rate(pids, seconds) * 60


def restarted(check_seconds: float) -> Any:
    """The stack restarted (same database) with the pause-expiry check every ``check_seconds``."""
    from cutline.base.settings import reload_settings
    from cutline.ops import stack

    stack.down(reload_settings())
    os.environ["CUTLINE_SERVER_PAUSE_EXPIRY_CHECK_SECONDS"] = str(check_seconds)
    settings = reload_settings()
    stack.up(settings)
    return settings


def create_waiting(count: int, api_url: str) -> None:
    """``count`` review-cutout runs waiting for a retoucher, as a shoot's review stage makes them."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline.base.settings import get_settings
    from cutline.services.waiting_run import WaitingRunRequest, create_waiting_run
    from tasks.review import decision_key
    from tasks.review_request import REVIEW_TAG

    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name(get_settings().review_deployment).id
        for index in range(count):
            create_waiting_run(
                client,
                deployment,
                WaitingRunRequest(
                    pause_key=decision_key(0),
                    parameters={"item": {"sku": f"IDLE-{index}"}, "ctx": {}},
                    name=f"idle-{index}",
                    tags=[REVIEW_TAG, "job:IDLE"],
                    idempotency_key=f"idle:{index}",
                ),
            )


def main() -> None:
    """Run the measurement and write results/waiting-idle.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waiting", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--check-seconds", type=float, default=120.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cutline-waiting-idle-"))
    bench_settings(work, "waiting_idle", "4297", postgres=True)
    from cutline.base.settings import reload_settings
    from cutline.ops import stack

    rows: list[dict] = []
    try:
        settings = restarted(PREFECT_DEFAULT_CHECK_SECONDS)
        rows.append({"waiting": 0, "check_seconds": PREFECT_DEFAULT_CHECK_SECONDS})
        rows[-1]["cpu_s_per_min"] = idle_cpu_per_minute(args.seconds)
        started = time.perf_counter()
        create_waiting(args.waiting, settings.api_url)
        print(f"{args.waiting} waiting runs created in {time.perf_counter() - started:.0f} s")
        for check in (PREFECT_DEFAULT_CHECK_SECONDS, args.check_seconds) * 2:
            restarted(check)
            rows.append({"waiting": args.waiting, "check_seconds": check})
            rows[-1]["cpu_s_per_min"] = idle_cpu_per_minute(args.seconds)
            print(rows[-1], flush=True)
    finally:
        stack.down(reload_settings())
        shutil.rmtree(work, ignore_errors=True)
    by_check = {
        check: median([r["cpu_s_per_min"] for r in rows[1:] if r["check_seconds"] == check])
        for check in (PREFECT_DEFAULT_CHECK_SECONDS, args.check_seconds)
    }
    data = {"waiting": args.waiting, "seconds": args.seconds, "rows": rows, "median": by_check}
    lines = [
        f"# Idle stack with {args.waiting} reviews waiting (PostgreSQL)",
        "",
        "| reviews waiting | pause-expiry check every (s) | server + serve CPU s per minute |",
        "|---|---|---|",
        *[f"| {r['waiting']} | {r['check_seconds']:g} | {r['cpu_s_per_min']:.2f} |" for r in rows],
        "",
        f"Median CPU s per minute with {args.waiting} waiting: "
        + ", ".join(f"check every {c:g} s: **{v:.2f}**" for c, v in by_check.items()),
    ]
    print(write_result("waiting-idle", data, "\n".join(lines)).read_text())


if __name__ == "__main__":
    main()
