"""Streaming batches against stage-by-stage scheduling, side by side.

    python -m benchmarks.streaming [--count 200] [--size 800x533] [--runs 2] [--postgres]

The same shoot (a third of it glassware, which always goes to review) runs with
CUTLINE_BATCH_ORDER=streaming and =stage-by-stage, alternating in each round so machine noise
hits both. For each run: when the first asset reached the DAM and when the first review was
waiting for a retoucher, as a share of the shoot's whole time, counted until the machine is
idle again (the shoot run ended and every review it requested waits, suspended).
Targets (issue 13): streaming lands the first asset and the first waiting review within the
first quarter of the shoot's time, and the whole shoot takes no longer than stage-by-stage.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import bench_settings, median, write_jpegs, write_result

ORDERS = ("streaming", "stage-by-stage")


def _manifest(shoot: Path) -> int:
    """Every third image is glassware (review lane); returns the number of reviews."""
    names = sorted(p.name for p in shoot.glob("*.jpg"))
    with (shoot / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "sku", "category"])
        for index, name in enumerate(names):
            writer.writerow([name, f"B-{index:05d}", "glassware" if index % 3 == 0 else "homeware"])
    return len(names[::3])


def _review_runs(job: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
    )

    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["review-cutout"])),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"job:{job}"])),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return runs


def _shoot_run(job: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[job]))
        )
        return run


def one_run(shoot: Path, out: Path, job: str, order: str, reviews: int) -> dict[str, float]:
    """One shoot with ``order``; seconds from its start to the first asset, the first waiting
    review, and until every review waits (the machine is idle again)."""
    from cutline.base.settings import reload_settings
    from dam_adapters.local_catalog import LocalCatalog
    from flows.process_shoot import process_shoot

    os.environ["CUTLINE_BATCH_ORDER"] = order
    settings = reload_settings()
    process_shoot(shoot=str(shoot), job_id=job, output_root=str(out))
    deadline = time.monotonic() + 900
    while True:  # the review runs start in the worker process: wait until all of them wait
        runs = _review_runs(job)
        waiting = [r for r in runs if r.state and r.state.name == "Suspended"]
        if len(waiting) >= reviews or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert len(waiting) == reviews, f"{len(waiting)} of {reviews} reviews wait"
    shoot_run = _shoot_run(job)
    start = shoot_run.start_time
    assets = LocalCatalog(settings.resolved_catalog_dir).list_job(job)
    first_asset = min(datetime.fromisoformat(a.created_at) for a in assets)
    suspended = [r.state.timestamp for r in waiting]
    idle = max([shoot_run.end_time, *suspended])
    return {
        "total": (idle - start).total_seconds(),
        "shoot_run": (shoot_run.end_time - start).total_seconds(),
        "first_asset": (first_asset - start).total_seconds(),
        "first_review": (min(suspended) - start).total_seconds(),
    }


def main() -> None:
    """Run the rounds and write results/streaming.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", default="800x533")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-bench-"))
    settings = bench_settings(
        work,
        "streaming",
        "4295",
        args.postgres,
        CUTLINE_SHARE_PORT=os.environ.get("CUTLINE_BENCH_SHARE_PORT", "4296"),
    )
    from cutline.ops import stack

    shoot = work / "shoot"
    write_jpegs(shoot, args.count, (width, height))
    reviews = _manifest(shoot)
    results: dict[str, list[dict[str, float]]] = {order: [] for order in ORDERS}
    try:
        with stack.using_stack(settings):
            one_run(shoot, work / "warm", "WARMUP", "streaming", reviews)
            for round_ in range(args.runs):
                for order in ORDERS if round_ % 2 == 0 else reversed(ORDERS):
                    job = f"{order.upper()}-{round_}"
                    got = one_run(shoot, work / job, job, order, reviews)
                    results[order].append(got)
                    print(
                        f"round {round_} {order}: "
                        + ", ".join(f"{k} {v:.1f} s" for k, v in got.items())
                    )
                    shutil.rmtree(work / job, ignore_errors=True)
    finally:
        stack.down(settings)

    def med(order: str, key: str) -> float:
        return median([r[key] for r in results[order]])

    rows = []
    for order in ORDERS:
        total = med(order, "total")
        rows.append(
            f"| {order} | {total:.1f} | {med(order, 'first_asset'):.1f} "
            f"({med(order, 'first_asset') / total:.0%}) | {med(order, 'first_review'):.1f} "
            f"({med(order, 'first_review') / total:.0%}) |"
        )
    ratio = med("streaming", "total") / med("stage-by-stage", "total")
    data = {
        "count": args.count,
        "size": [width, height],
        "runs": args.runs,
        "reviews": reviews,
        "postgres": args.postgres,
        "workers": settings.workers,
        "batch_size": settings.batch_size,
        "results": results,
        "total_ratio_streaming_over_stage_by_stage": round(ratio, 3),
    }
    markdown = "\n".join(
        [
            "# Streaming batches vs stage-by-stage",
            "",
            f"{args.count} camera-like JPEGs {width}x{height} ({reviews} glassware: review lane), "
            f"u2netp, local catalog; {args.runs} alternating rounds after a warm-up; Prefect "
            f"server on {'PostgreSQL' if args.postgres else 'SQLite'}; workers={settings.workers}, "
            f"batch={settings.batch_size}. Medians; the shoot's time runs until every review waits.",
            "",
            "| order | shoot s | first asset in DAM s (share) | first review waiting s (share) |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Whole shoot, streaming / stage-by-stage: **{ratio:.3f}** (target <= 1.0); "
            "first asset and first review within 25% of the shoot (target).",
        ]
    )
    print(write_result("streaming", data, markdown).read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
