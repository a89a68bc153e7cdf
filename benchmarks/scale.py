"""Scale: shoots of 1,000 / 5,000 / 20,000 images on one machine against PostgreSQL.

    python -m benchmarks.scale [--sizes 1000,5000,20000] [--image 800x533]
                               [--backend bench-threshold-not-ai] [--real-model-at 1000]

Each shoot runs in its own worker process (so its peak RSS is its own) against one
Prefect server on a fresh PostgreSQL database. While it runs, this process reads the
flow run from the API every 0.5 s and records the latency (p95 reported). Reported per
size: images per minute, the worker's peak RSS, API p95; and the ratios 20k/1k.
`--backend` is the stand-in used for the scale series (it is not a cutout model; the
report says so); `--real-model-at N` adds one run of N images with u2netp for the record.
Targets (issue 5): rate at 20k >= 0.9 x rate at 1k; peak RSS at 20k <= 1.2 x at 1k; API p95 < 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import write_jpegs, write_result


def _worker(shoot: str, job_id: str, out: str, result_file: str, ask_reviews: bool = True) -> None:
    """Child process: run one shoot in-process and report its time and peak RSS. With
    ``ask_reviews`` off (a control arm, `benchmarks.review_load`) the review stage still runs
    over its batches but opens no review run: the shoot does everything else it would."""
    import resource

    from flows.process_shoot import process_shoot

    if not ask_reviews:
        from tasks.stages import STAGES

        review = next(stage for stage in STAGES if stage.name == "review")
        object.__setattr__(review, "make_work", lambda ctx: lambda item: None)

    started = time.perf_counter()
    summary = process_shoot(shoot=shoot, job_id=job_id, output_root=out)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(result_file).write_text(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_kb / 1024,
                "lanes": summary.lanes,
                "total": summary.total,
            }
        )
    )


def _find_run_id(api: str, job_id: str, deadline: float) -> str | None:
    body = json.dumps({"flow_runs": {"name": {"any_": [job_id]}}, "limit": 1}).encode()
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{api}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                runs = json.load(resp)
            if runs:
                return runs[0]["id"]
        except OSError:
            pass
        time.sleep(0.5)
    return None


def _probe_api(api: str, job_id: str, stop: threading.Event, latencies: list[float]) -> None:
    """Read the shoot's flow run every 0.5 s and record how long the API takes."""
    run_id = _find_run_id(api, job_id, time.monotonic() + 300)
    if run_id is None:
        return
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=30) as resp:
                resp.read()
            latencies.append(time.perf_counter() - started)
        except OSError:
            latencies.append(30.0)
        stop.wait(0.5)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else float("nan")


@contextlib.contextmanager
def probing(api: str, job_id: str) -> Iterator[list[float]]:
    """Read the shoot's flow run from the API every 0.5 s while the block runs; the
    latencies fill the yielded list."""
    latencies: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=_probe_api, args=(api, job_id, stop, latencies), daemon=True)
    probe.start()
    try:
        yield latencies
    finally:
        stop.set()
        probe.join(timeout=10)


def run_in_worker(
    shoot: Path, work: Path, job_id: str, env: dict[str, str], ask_reviews: bool = True
) -> dict:
    """Run one shoot in a worker process (`_worker`); what it reported."""
    result_file = work / f"{job_id}.json"
    code = (
        "from benchmarks.scale import _worker; "
        f"_worker({str(shoot)!r}, {job_id!r}, {str(work / 'out')!r}, {str(result_file)!r}, "
        f"ask_reviews={ask_reviews!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return json.loads(result_file.read_text())


def run_size(
    count: int, backend: str, work: Path, image: tuple[int, int], api: str, env: dict[str, str]
) -> dict:
    """One shoot of ``count`` images in a worker process; its figures."""
    shoot = work / f"shoot-{count}"
    if not shoot.exists():
        write_jpegs(shoot, count, image)
    job_id = f"SCALE-{count}-{backend[:5]}-{int(time.time())}"
    with probing(api, job_id) as latencies:
        data = run_in_worker(shoot, work, job_id, {**env, "CUTLINE_MODEL": backend})
    shutil.rmtree(work / "out" / job_id, ignore_errors=True)
    return {
        "count": count,
        "backend": backend,
        "seconds": round(data["seconds"], 1),
        "images_per_minute": round(count / data["seconds"] * 60, 1),
        "peak_rss_mb": round(data["peak_rss_mb"], 1),
        "api_p95_seconds": round(_p95(latencies), 3),
        "api_reads": len(latencies),
        "lanes": data["lanes"],
    }


def main() -> None:
    """Run the series and write results/scale.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--image", default="800x533")
    parser.add_argument("--backend", default="bench-threshold-not-ai")
    parser.add_argument("--real-model-at", type=int, default=1000)
    args = parser.parse_args()
    image = tuple(int(v) for v in args.image.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-scale-"))
    rules = work / "rules.yaml"
    rules.write_text('version: "scale"\nconfidence: {review_below: 0.0}\n')
    from benchmarks.postgres import fresh_database_url

    os.environ.update(
        CUTLINE_DATA_ROOT=str(work / "data"),
        CUTLINE_RULES_FILE=str(rules),
        CUTLINE_SIGNOFF_DEPLOYMENT="",  # measure processing, not the contact sheet after it
        CUTLINE_SERVER_PORT=os.environ.get("CUTLINE_BENCH_PORT", "4293"),
        CUTLINE_SERVER_DATABASE_URL=fresh_database_url("cutline_bench_scale"),
        CUTLINE_BATCH_SIZE=os.environ.get("CUTLINE_BATCH_SIZE", "50"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_TO_API_ENABLED="false",
    )
    os.environ.setdefault("CUTLINE_MODEL_HOME", str(Path.home() / ".cutline" / "models"))
    from cutline.base.settings import reload_settings
    from cutline.imaging import model_store
    from cutline.ops import stack

    settings = reload_settings()
    model_store.fetch("u2netp", settings.resolved_model_home)
    rows = []
    try:
        current = stack.up(settings)
        env = {**os.environ, "PREFECT_API_URL": current.api_url}
        for count in (int(s) for s in args.sizes.split(",")):
            rows.append(run_size(count, args.backend, work, image, current.api_url, env))
            print(rows[-1])
        if args.real_model_at:
            rows.append(run_size(args.real_model_at, "u2netp", work, image, current.api_url, env))
            print(rows[-1])
    finally:
        stack.down(settings)
        shutil.rmtree(work, ignore_errors=True)
    series = [r for r in rows if r["backend"] == args.backend]
    first, last = series[0], series[-1]
    ratios = {
        "rate_ratio": round(last["images_per_minute"] / first["images_per_minute"], 3),
        "memory_ratio": round(last["peak_rss_mb"] / first["peak_rss_mb"], 3),
        "from": first["count"],
        "to": last["count"],
    }
    lines = [
        "# Scale on one machine (Prefect server on PostgreSQL)",
        "",
        f"Images {image[0]}x{image[1]}, batch size {os.environ['CUTLINE_BATCH_SIZE']}, workers {settings.workers}. "
        f"The series uses `{args.backend}`, a colour-distance stand-in that is NOT a cutout model, so "
        "the orchestration is measured at 20,000 images in minutes; the u2netp row is the real model.",
        "",
        "| images | backend | seconds | images/min | worker peak RSS (MB) | API read p95 (s) |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['count']} | {r['backend']} | {r['seconds']} | {r['images_per_minute']} | {r['peak_rss_mb']} | {r['api_p95_seconds']} |"
            for r in rows
        ],
        "",
        f"Rate {ratios['to']}/{ratios['from']}: **{ratios['rate_ratio']}** (target >= 0.9); "
        f"peak RSS {ratios['to']}/{ratios['from']}: **{ratios['memory_ratio']}** (target <= 1.2).",
    ]
    print(write_result("scale", {"rows": rows, "ratios": ratios}, "\n".join(lines)).read_text())


if __name__ == "__main__":
    main()
