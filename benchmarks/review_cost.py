"""What making one review wait costs: CPU seconds per review-lane image, before and now.

    python -m benchmarks.review_cost [--count 30] [--size 2000x1333] [--runs 3] [--postgres]

A shoot of ``count`` images, all in the review lane (category glassware), is run once to get
their masks and PSDs. Then, alternating, the same images are put up for review again under a
fresh job id in two ways, and the CPU seconds of everything involved are counted (this
process, the Prefect server, the worker process and every flow-run process it starts) from the
first request until every review waits and the worker process has no child left:

- `self-suspending`: the way before issue 17: `run_deployment` creates a scheduled run, the
  worker process starts a `python -m prefect.engine` process for it, which publishes the
  review page, stores the form and suspends;
- `created-waiting`: the shoot's review stage now (`tasks.review_request`): the runs of a batch
  are created already suspended in one request, then each gets its form, page and event; no
  process starts.

The page (a three-panel preview PNG and the share link) is made in both ways; its own CPU in
this process is reported separately (`page`). The server's idle CPU over the same time is
measured and subtracted. Target (issue 17): <= 0.2 CPU s per review-lane image.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    bench_settings,
    idle_cpu_rate,
    live_children,
    median,
    tree_cpu_seconds,
    waiting_reviews,
    write_jpegs,
    write_manifest,
    write_result,
)


def _items_and_context(out: Path, job_id: str):
    """The review-lane records the preparing shoot left, and its context."""
    import json

    from cutline.domain.items import ImageItem
    from tasks.context import ShootContext

    job_root = out / job_id
    items = []
    for batch in sorted((job_root / "batches").glob("*.json")):
        items += [ImageItem.model_validate(i) for i in json.loads(batch.read_text())["items"]]
    first_review = next(i for i in items if i.review_run_id)
    with _client() as client:
        run = client.read_flow_run(first_review.review_run_id)
    ctx = ShootContext.model_validate(run.parameters["ctx"])
    return [i for i in items if i.review_run_id], ctx


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def self_suspending(items, ctx) -> None:
    """Before: a scheduled run per image that a worker process executes only to suspend."""
    from prefect.deployments import run_deployment

    from tasks.review import review_run_name

    for item in items:
        run_deployment(
            ctx.config.review_deployment,
            parameters={"item": item.model_dump(mode="json"), "ctx": ctx.model_dump(mode="json")},
            flow_run_name=review_run_name(item, ctx.job_id),
            tags=["cutline-review", f"job:{ctx.job_id}"],
            idempotency_key=f"bench:{ctx.job_id}:{item.image_id}",
            timeout=0,
            as_subflow=False,
        )


def created_waiting(items, ctx) -> None:
    """Now: the shoot's review stage, over batches of the shoot's batch size."""
    from tasks.context import for_each_image
    from tasks.review_request import make_review_request

    size = ctx.config.batch_size
    for start in range(0, len(items), size):
        for_each_image(items[start : start + size], "review", make_review_request(ctx))


def measure(way, items, ctx, server: int, serve: int, idle_rate: float) -> dict:
    """CPU and wall seconds from the first request until every review waits, idle again."""
    started_cpu = time.process_time() + tree_cpu_seconds(server) + tree_cpu_seconds(serve)
    started = time.perf_counter()
    way(items, ctx)
    while waiting_reviews(ctx.job_id) < len(items) or live_children(serve):
        time.sleep(0.1)
    wall = time.perf_counter() - started
    cpu = time.process_time() + tree_cpu_seconds(server) + tree_cpu_seconds(serve) - started_cpu
    cpu -= idle_rate * wall
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "per_review": cpu / len(items)}


def page_cpu(items, ctx) -> float:
    """CPU seconds per image of the review page alone (preview JPEG, page, share link)."""
    from tasks.review import publish_page

    started = time.process_time()
    for n, item in enumerate(items):
        publish_page(item, ctx, f"bench-page-{ctx.job_id}-{n}")
    return (time.process_time() - started) / len(items)


def main() -> None:
    """Run the comparison and write results/review-cost.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--size", default="2000x1333")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-review-cost-"))
    settings = bench_settings(work, "review_cost", "4295", args.postgres)
    from cutline.ops import stack
    from flows.process_shoot import process_shoot

    shoot = work / "shoot"
    write_manifest(shoot, write_jpegs(shoot, args.count, (width, height)), 1.0)
    results: dict[str, list[dict]] = {"self-suspending": [], "created-waiting": []}
    pages = []
    try:
        with stack.using_stack(settings) as current:
            server, serve = current.pid, stack.worker_pid(settings)
            assert server and serve, "the benchmark needs the stack's own server and serve"
            summary = process_shoot(shoot=str(shoot), job_id="PREP", output_root=str(work / "out"))
            items, ctx = _items_and_context(work / "out", "PREP")
            assert len(items) == summary.lanes["review"] == args.count, summary.lanes
            while live_children(serve):
                time.sleep(0.2)
            idle_rate = idle_cpu_rate([server], 10)
            for round_ in range(args.runs):
                for name, way in (
                    ("self-suspending", self_suspending),
                    ("created-waiting", created_waiting),
                ):
                    job = ctx.model_copy(update={"job_id": f"{name[:4].upper()}-{round_}"})
                    results[name].append(measure(way, items, job, server, serve, idle_rate))
                    print(name, results[name][-1], flush=True)
                pages.append(page_cpu(items, ctx.model_copy(update={"job_id": f"PAGE-{round_}"})))
    finally:
        stack.down(settings)
    per_review = {name: median([r["per_review"] for r in rows]) for name, rows in results.items()}
    page = median(pages)
    data = {
        "count": args.count,
        "size": [width, height],
        "postgres": args.postgres,
        "rounds": results,
        "page_cpu_per_review": round(page, 4),
        "server_idle_cpu_per_s": round(idle_rate, 4),
        "cpu_per_review": {k: round(v, 4) for k, v in per_review.items()},
    }
    rows = [
        f"| {name} | {median([r['wall_s'] for r in results[name]]):.1f} "
        f"| {per_review[name]:.3f} | {per_review[name] - page:.3f} |"
        for name in results
    ]
    markdown = "\n".join(
        [
            f"# CPU to make a review wait ({args.count} review-lane images, {width}x{height})",
            "",
            f"{args.runs} alternating rounds; server on {'PostgreSQL' if args.postgres else 'SQLite'}; "
            f"the server's idle CPU ({idle_rate:.3f} s/s) subtracted. CPU counted in this process, "
            "the server and the worker process with every process it started.",
            "",
            "| way | median wall s (all waiting) | CPU s per review | without the page |",
            "|---|---|---|---|",
            *rows,
            "",
            f"The review page alone (preview JPEG, page, share link): {page:.3f} CPU s per review.",
            "Target: <= 0.2 CPU s per review-lane image.",
        ]
    )
    print(write_result("review-cost", data, markdown).read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
