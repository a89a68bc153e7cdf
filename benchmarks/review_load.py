"""Do a shoot's reviews slow its AI lane? The same large shoot with and without its review runs.

    python -m benchmarks.review_load [--count 5000] [--image 240x160] [--review-share 0.3]
                                     [--backend bench-threshold-not-ai] [--runs 1]
                                     [--control requests|manifest]

One PostgreSQL-backed server and worker process; each shoot runs in its own worker process
(`benchmarks.scale._worker`). The shoot's manifest routes ``review-share`` of its images to the
review lane (category glassware: one review-cutout run each). Two arms alternate, which one goes
first swapping every round (the server's database grows with every shoot, so a later shoot is a
little slower):
- `reviews`: the shoot as a studio runs it;
- the control, by default `requests`: the same shoot, same lanes, same exports and DAM
  registrations, whose review stage runs over its batches but opens no review run. The ratio
  is then the cost of the review runs alone. `--control manifest` compares with a shoot whose
  manifest routes nothing to review instead (the first form of this benchmark): that shoot
  exports every rendition and registers every image, more work than the review lane's PSD,
  which leans the comparison towards the shoot with reviews.
Each shoot is timed from its start until its run has ended, every review waits and the serve
process has no flow-run process left (all the work it caused); the report gives images per
minute through the AI lane (every image is cut out, scored, routed and exported in both) and
the ratio. Target (issue 17): the shoot with reviews keeps >= 0.95 of the control's rate. The
default backend is the scale series' stand-in (NOT a cutout model), so the orchestration, not
inference, dominates: the hardest case for this ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    live_children,
    median,
    tree_cpu_seconds,
    waiting_reviews,
    write_jpegs,
    write_manifest,
    write_result,
)
from benchmarks.scale import _p95, probing, run_in_worker


def run_shoot(
    shoot: Path,
    work: Path,
    job_id: str,
    api: str,
    env: dict[str, str],
    pids: list[int],
    ask_reviews: bool,
) -> dict:
    """One shoot in a worker process, timed until its reviews wait and serve is idle."""
    cpu = sum(tree_cpu_seconds(pid) for pid in pids)
    started = time.perf_counter()
    with probing(api, job_id) as latencies:
        data = run_in_worker(shoot, work, job_id, env, ask_reviews)
        reviews = data["lanes"].get("review", 0) if ask_reviews else 0
        while waiting_reviews(job_id) < reviews or live_children(pids[-1]):
            time.sleep(0.5)
        seconds = time.perf_counter() - started
    shutil.rmtree(work / "out" / job_id, ignore_errors=True)
    return {
        "job": job_id,
        "seconds": round(seconds, 1),
        "shoot_run_seconds": round(data["seconds"], 1),
        "images_per_minute": round(data["total"] / seconds * 60, 1),
        "lanes": data["lanes"],
        "server_and_serve_cpu_s": round(sum(tree_cpu_seconds(p) for p in pids) - cpu, 1),
        "worker_peak_rss_mb": round(data["peak_rss_mb"], 1),
        "api_p95_seconds": round(_p95(latencies), 3),
    }


def main() -> None:
    """Run the comparison and write results/review-load.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--image", default="240x160")
    parser.add_argument("--review-share", type=float, default=0.3)
    parser.add_argument("--backend", default="bench-threshold-not-ai")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--control", choices=("requests", "manifest"), default="requests")
    args = parser.parse_args()
    image = tuple(int(v) for v in args.image.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-review-load-"))
    rules = work / "rules.yaml"
    # Only the category routes: no confidence threshold, so the stand-in's scores send nothing
    # to review and the two shoots differ in their manifests alone.
    rules.write_text(
        'version: "review-load"\nconfidence: {review_below: 0.0}\n'
        "review_categories:\n  glassware: {queue: senior, reason: "
        '"Glassware: a senior retoucher checks every one."}\n'
    )
    from benchmarks.postgres import fresh_database_url

    os.environ.update(
        CUTLINE_DATA_ROOT=str(work / "data"),
        CUTLINE_RULES_FILE=str(rules),
        CUTLINE_SIGNOFF_DEPLOYMENT="",  # measure processing, not the contact sheet after it
        CUTLINE_SERVER_PORT=os.environ.get("CUTLINE_BENCH_PORT", "4298"),
        CUTLINE_SERVER_DATABASE_URL=fresh_database_url("cutline_bench_review_load"),
        CUTLINE_BATCH_SIZE=os.environ.get("CUTLINE_BATCH_SIZE", "50"),
        CUTLINE_MODEL=args.backend,
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_TO_API_ENABLED="false",
    )
    os.environ.setdefault("CUTLINE_MODEL_HOME", str(Path.home() / ".cutline" / "models"))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline.base.settings import reload_settings
    from cutline.imaging import model_store
    from cutline.ops import stack

    settings = reload_settings()
    model_store.fetch("u2netp", settings.resolved_model_home)
    # arm -> (shoot folder, whether its review stage opens review runs)
    arms: dict[str, tuple[Path, bool]] = {}
    for arm, share, ask in (
        ("reviews", args.review_share, True),
        (args.control, args.review_share if args.control == "requests" else 0.0, False),
    ):
        folder = work / f"shoot-{share}"
        if not folder.exists():
            write_manifest(folder, write_jpegs(folder, args.count, image), share)
        arms[arm] = (folder, ask)
    rows: dict[str, list[dict]] = {arm: [] for arm in arms}
    try:
        current = stack.up(settings)
        pids = [current.pid, stack.worker_pid(settings)]
        assert all(pids), "the benchmark needs the stack's own server and worker process"
        env = {**os.environ, "PREFECT_API_URL": current.api_url}
        # This process reads the review queue from the stack's server too (Prefect reads
        # its settings once: the environment alone would leave it on an ephemeral server).
        with temporary_settings(updates={PREFECT_API_URL: current.api_url}):
            for round_ in range(args.runs):
                order = list(arms) if round_ % 2 == 0 else list(reversed(arms))
                for arm in order:
                    folder, ask = arms[arm]
                    job = f"LOAD-{arm.upper()}-{round_}"
                    rows[arm].append(run_shoot(folder, work, job, current.api_url, env, pids, ask))
                    print(rows[arm][-1], flush=True)
    finally:
        stack.down(settings)
        shutil.rmtree(work, ignore_errors=True)
    rate = {arm: median([r["images_per_minute"] for r in rows[arm]]) for arm in rows}
    ratio = rate["reviews"] / rate[args.control]
    data = {
        "count": args.count,
        "image": image,
        "review_share": args.review_share,
        "control": args.control,
        "backend": args.backend,
        "rows": {str(k): v for k, v in rows.items()},
        "ratio": round(ratio, 3),
        "load_1min": os.getloadavg()[0],
    }
    lines = [
        f"# {args.count} images, {args.review_share:.0%} reviews, against control "
        f"`{args.control}` (PostgreSQL)",
        "",
        f"Images {image[0]}x{image[1]}, batch {os.environ['CUTLINE_BATCH_SIZE']}, backend "
        f"`{args.backend}`{' (a stand-in, NOT a cutout model)' if 'not-ai' in args.backend else ''}; "
        "timed until every review waits and the worker process is idle.",
        "",
        "| arm | run | lanes | s (shoot run) | images/min | server + serve CPU s | API p95 s |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {arm} | {r['job']} | {r['lanes']} | {r['seconds']} ({r['shoot_run_seconds']}) "
            f"| {r['images_per_minute']} | {r['server_and_serve_cpu_s']} | {r['api_p95_seconds']} |"
            for arm in rows
            for r in rows[arm]
        ],
        "",
        f"AI-lane rate with review runs / control: **{ratio:.3f}** (target >= 0.95).",
    ]
    print(write_result("review-load", data, "\n".join(lines)).read_text())


if __name__ == "__main__":
    main()
