"""Orchestration overhead: process-shoot against a plain Python loop doing the same work.

    python -m benchmarks.overhead [--count 200] [--size 2000x1333] [--runs 3] [--postgres]

Both sides run the same per-image stage functions (tasks/*.make_*) with the same model
(u2netp), settings and renditions, alternating flow / loop in each round so machine
noise hits both; the report gives medians and their ratio. Every image is routed to
the auto lane (a rules file with no review threshold) so both sides do identical work.
Target (issue 5): flow images/s >= 0.90 x loop images/s.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import bench_settings, median, timed, write_jpegs, write_result

RULES_ALL_AUTO = """version: "bench-all-auto"
confidence: {review_below: 0.0}
"""


def plain_loop(shoot: Path, out: Path, job_id: str) -> int:
    """The same work as process-shoot, image after image, without Prefect."""
    from cutline.base import storage
    from cutline.base.settings import get_settings
    from cutline.domain.items import JobLayout
    from cutline.domain.run_config import RunConfig
    from cutline.records.ledger import write_ledger
    from cutline.records.tally import reconcile
    from cutline.services.limits import ensure_limits
    from tasks.context import ShootContext
    from tasks.ingest import plan_shoot
    from tasks.stages import run_plain

    settings = get_settings()
    layout = JobLayout.for_job(str(out), job_id)
    ctx = ShootContext(
        job_id=job_id,
        shoot=str(shoot),
        job_root=layout.root,
        output_root=str(out),
        config=RunConfig.freeze(settings),
    )
    ensure_limits(settings)  # the register stage honours the DAM rate limit, as in the flow
    plan = plan_shoot.fn(ctx, None, settings.batch_size)
    items = run_plain(plan.items(), ctx)
    write_ledger(items, layout)
    lanes = reconcile(plan.inputs, items)
    assert storage.exists(layout.ledger)
    return lanes["auto"]


def run_flow(shoot: Path, out: Path, job_id: str) -> int:
    """process-shoot on the same shoot (in-process, against the stack's Prefect server)."""
    from flows.process_shoot import process_shoot

    summary = process_shoot(shoot=str(shoot), job_id=job_id, output_root=str(out))
    return summary.lanes["auto"]


def main() -> None:
    """Run the comparison and write results/overhead.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", default="2000x1333")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--postgres", action="store_true", help="Prefect server on PostgreSQL (127.0.0.1:5432)"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-bench-"))
    rules = work / "rules.yaml"
    rules.write_text(RULES_ALL_AUTO)
    settings = bench_settings(
        work, "overhead", "4291", args.postgres, CUTLINE_RULES_FILE=str(rules)
    )
    from cutline.ops import stack

    shoot = work / "shoot"
    write_jpegs(shoot, args.count, (width, height))
    flow_times, loop_times = [], []
    try:
        with stack.using_stack(settings):
            run_flow(shoot, work / "warm", "WARMUP")  # model session, imports, server caches
            for round_ in range(args.runs):
                seconds, auto = timed(run_flow, shoot, work / f"flow{round_}", f"FLOW-{round_}")
                assert auto == args.count, (
                    f"flow put {args.count - auto} images outside the auto lane"
                )
                flow_times.append(seconds)
                seconds, auto = timed(plain_loop, shoot, work / f"loop{round_}", f"LOOP-{round_}")
                assert auto == args.count
                loop_times.append(seconds)
                shutil.rmtree(work / f"flow{round_}", ignore_errors=True)
                shutil.rmtree(work / f"loop{round_}", ignore_errors=True)
                print(f"round {round_}: flow {flow_times[-1]:.1f} s, loop {loop_times[-1]:.1f} s")
    finally:
        stack.down(settings)
    flow_rate = args.count / median(flow_times)
    loop_rate = args.count / median(loop_times)
    ratio = flow_rate / loop_rate
    data = {
        "count": args.count,
        "size": [width, height],
        "runs": args.runs,
        "postgres": args.postgres,
        "flow_seconds": flow_times,
        "loop_seconds": loop_times,
        "flow_images_per_second": round(flow_rate, 3),
        "loop_images_per_second": round(loop_rate, 3),
        "ratio": round(ratio, 3),
        "workers": settings.workers,
        "batch_size": settings.batch_size,
    }
    markdown = "\n".join(
        [
            "# Orchestration overhead: process-shoot vs a plain loop",
            "",
            f"{args.count} camera-like JPEGs {width}x{height}, u2netp, all renditions, local catalog; "
            f"{args.runs} alternating rounds after a warm-up; Prefect server on "
            f"{'PostgreSQL' if args.postgres else 'SQLite'}; workers={settings.workers}, batch={settings.batch_size}.",
            "",
            "| | median s | images/s |",
            "|---|---|---|",
            f"| process-shoot | {median(flow_times):.1f} | {flow_rate:.2f} |",
            f"| plain loop | {median(loop_times):.1f} | {loop_rate:.2f} |",
            f"| **ratio (flow / loop)** | | **{ratio:.2f}** |",
            "",
            "Target: ratio >= 0.90.",
        ]
    )
    print(write_result("overhead", data, markdown).read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
