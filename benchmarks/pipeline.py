"""The whole pipeline against the plain loop a studio would write by hand.

    python -m benchmarks.pipeline [--count 40] [--size 2000x1333] [--runs 3]
                                  [--review-share 0.3] [--postgres]

Two references, each a plain single-process loop over the same images:

- the **floor** (`floor_loop`, issue 32): the least work any pipeline producing these renditions
  must do. Decode, u2netp once through rembg's own `new_session` with onnxruntime's default
  threads (every core), the mask upscaled to the photo (rembg's own resize), a PNG with alpha
  (Pillow, `compress_level=1`) and one flat JPG (quality 90).
- the **plain loop** (`plain_loop`, the reference of issue 17) decodes each image, runs u2netp
  once with the pipeline's own session settings (threads shared by the workers), and writes the
  cutout as a PNG with alpha (Pillow's encoder, the pipeline's level) and one JPG. The
pipeline is `process-shoot` with the shipped settings (second view on, confidence, routing, PNG,
layered PSD, a JPG per channel, DAM registration, the ledger) on the same images, about
``review-share`` of them routed to the review lane (category glassware). Its time runs until
the shoot run has ended, every review-lane image waits for a retoucher and the worker process
has no flow-run process left: all the work the shoot caused. Rounds alternate pipeline and loop
so machine noise hits all three; medians and the ratios are reported, with the CPU seconds
each spent (this process, the Prefect server and the worker process with its children).
Targets (issue 32, against the floor): <= 1.6 at 2000x1333 (40 images), <= 2.0 at 6000x4000
(4 images).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    bench_settings,
    live_children,
    median,
    tree_cpu_seconds,
    waiting_reviews,
    write_jpegs,
    write_manifest,
    write_result,
)


def plain_loop(shoot: Path, out: Path) -> int:
    """Decode, u2netp once, PNG with alpha and one JPG per image; no Prefect, no records."""
    from cutline.base.settings import get_settings
    from cutline.imaging import renditions
    from cutline.imaging.codec import decode_image
    from cutline.imaging.segmenter import get_session, predict_alpha
    from rules.presets import load_presets
    from tasks.cutout import full_resolution_mask

    settings = get_settings()
    session = get_session(
        settings.model, settings.resolved_model_home, settings.onnx_threads, settings.onnx_providers
    )
    preset = load_presets(Path(settings.presets_file)).presets["web"]
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(shoot.glob("*.jpg")):
        rgb, _ = decode_image(path.read_bytes(), path.name, max_pixels=settings.max_pixels)
        small = rgb.copy()
        small.thumbnail((settings.model_input_max_side,) * 2)
        mask = full_resolution_mask(predict_alpha(session, small), rgb.size)
        rgba = renditions.cutout_rgba(rgb, mask)
        # Pillow's PNG encoder, as a studio's script would call it (the pipeline has its own,
        # faster one: cutline.imaging.png_writer), at the pipeline's compression level.
        rgba.save(
            out / f"{path.stem}.png", format="PNG", compress_level=settings.png_compress_level
        )
        (out / f"{path.stem}.jpg").write_bytes(renditions.channel_jpg_bytes(rgba, preset, b""))
        count += 1
    return count


def floor_loop(shoot: Path, out: Path) -> int:
    """Issue 32's floor: decode, u2netp once via rembg's `new_session` (onnxruntime's
    default threads), the mask upscaled to the photo, PNG with alpha at compress_level 1 and
    one flat JPG at quality 90, image after image; nothing else."""
    from PIL import Image
    from rembg import new_session

    from cutline.base.settings import get_settings
    from cutline.imaging import model_store

    model_store.use_model_home(get_settings().resolved_model_home)  # rembg's U2NET_HOME
    session = new_session("u2netp")
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(shoot.glob("*.jpg")):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        mask = session.predict(rgb)[0]  # rembg resizes the mask back to the photo's size
        rgba = rgb.copy()
        rgba.putalpha(mask)
        rgba.save(out / f"{path.stem}.png", format="PNG", compress_level=1)
        flat = Image.new("RGB", rgb.size, (255, 255, 255))
        flat.paste(rgb, mask=mask)
        flat.save(out / f"{path.stem}.jpg", format="JPEG", quality=90)
        count += 1
    return count


def run_pipeline(shoot: Path, out: Path, job_id: str, serve_pid: int | None) -> dict:
    """process-shoot, then wait until every review waits and the worker process is idle."""
    from flows.process_shoot import process_shoot

    summary = process_shoot(shoot=str(shoot), job_id=job_id, output_root=str(out))
    shoot_ended = time.perf_counter()
    reviews = summary.lanes.get("review", 0)
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        idle = serve_pid is None or not live_children(serve_pid)
        if idle and waiting_reviews(job_id) >= reviews:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"{job_id}: reviews still not waiting after 30 minutes")
    # CPU seconds the images spent in each stage (the shoot's own cost report): what the
    # pipeline's CPU went to besides orchestration.
    by_stage = summary.cost.cpu_seconds_by_stage if summary.cost else {}
    stages = {stage: round(seconds, 1) for stage, seconds in by_stage.items()}
    return {"lanes": summary.lanes, "shoot_ended": shoot_ended, "stage_cpu_s": stages}


def _cpu(pids: list[int]) -> list[float]:
    """CPU seconds so far of this process and of each of ``pids`` with its children."""
    return [time.process_time(), *(tree_cpu_seconds(pid) for pid in pids)]


def _spent(before: list[float], pids: list[int]) -> list[float]:
    return [round(after - was, 1) for after, was in zip(_cpu(pids), before, strict=True)]


def main() -> None:
    """Run the comparison and write results/pipeline-<size>.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--size", default="2000x1333")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--review-share", type=float, default=0.3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-pipeline-"))
    settings = bench_settings(work, f"pipeline_{args.size}", "4294", args.postgres)
    from cutline.ops import stack
    from tasks.ingest import balanced_batch_size

    shoot = work / "shoot"
    paths = write_jpegs(shoot, args.count, (width, height))
    write_manifest(shoot, paths, args.review_share)
    rows = []
    try:
        with stack.using_stack(settings) as current:
            pids = [p for p in (current.pid, stack.worker_pid(settings)) if p]
            serve = stack.worker_pid(settings)
            run_pipeline(shoot, work / "warm", "WARMUP", serve)  # imports, model, caches
            plain_loop(shoot, work / "warm-loop")
            floor_loop(shoot, work / "warm-floor")
            for round_ in range(args.runs):
                cpu, start = _cpu(pids), time.perf_counter()
                result = run_pipeline(shoot, work / f"flow{round_}", f"PIPE-{round_}", serve)
                flow_s, flow_cpus = time.perf_counter() - start, _spent(cpu, pids)
                shoot_run_s = result["shoot_ended"] - start
                cpu, start = _cpu(pids), time.perf_counter()
                assert plain_loop(shoot, work / f"loop{round_}") == args.count
                loop_s, loop_cpu = time.perf_counter() - start, sum(_spent(cpu, pids))
                cpu, start = _cpu(pids), time.perf_counter()
                assert floor_loop(shoot, work / f"floor{round_}") == args.count
                floor_s, floor_cpu = time.perf_counter() - start, sum(_spent(cpu, pids))
                flow_cpu = sum(flow_cpus)
                rows.append(
                    {
                        "pipeline_s": round(flow_s, 2),
                        "shoot_run_s": round(shoot_run_s, 2),
                        "floor_s": round(floor_s, 2),
                        "floor_ratio": round(flow_s / floor_s, 3),
                        "floor_cpu_s": round(floor_cpu, 1),
                        "loop_s": round(loop_s, 2),
                        "ratio": round(flow_s / loop_s, 3),
                        "pipeline_cpu_s": round(flow_cpu, 1),
                        # this process (the shoot flow and its stage threads), server, serve
                        "pipeline_cpu_by_process_s": flow_cpus,
                        "loop_cpu_s": round(loop_cpu, 1),
                        "stage_cpu_s": result["stage_cpu_s"],
                        "stages_total_cpu_s": round(sum(result["stage_cpu_s"].values()), 1),
                        "lanes": result["lanes"],
                        "load_1min": os.getloadavg()[0],
                    }
                )
                print(rows[-1], flush=True)
                shutil.rmtree(work / f"flow{round_}", ignore_errors=True)
                shutil.rmtree(work / f"loop{round_}", ignore_errors=True)
                shutil.rmtree(work / f"floor{round_}", ignore_errors=True)
    finally:
        stack.down(settings)
    flow_med = median([r["pipeline_s"] for r in rows])
    loop_med = median([r["loop_s"] for r in rows])
    floor_med = median([r["floor_s"] for r in rows])
    data = {
        "count": args.count,
        "size": [width, height],
        "review_share": args.review_share,
        "postgres": args.postgres,
        "rounds": rows,
        "pipeline_median_s": flow_med,
        "floor_median_s": floor_med,
        "floor_median_ratio": median([r["floor_ratio"] for r in rows]),
        "floor_ratio_of_medians": round(flow_med / floor_med, 3),
        "loop_median_s": loop_med,
        "ratio_of_medians": round(flow_med / loop_med, 3),
        "median_ratio": median([r["ratio"] for r in rows]),
        "second_view": settings.confidence_second_view,
        "workers": settings.workers,
        "batch_size": settings.batch_size,
    }
    lanes = rows[-1]["lanes"]
    markdown = "\n".join(
        [
            f"# Whole pipeline vs the floor and the plain loop, {args.count} x {width}x{height}",
            "",
            f"Pipeline: process-shoot, second view {'on' if settings.confidence_second_view else 'off'}, "
            f"workers={settings.workers}, batches of "
            f"{balanced_batch_size(args.count, settings.batch_size, settings.workers)} (at most "
            f"{settings.batch_size}), lanes {lanes}, timed until every "
            "review waits and the worker process is idle. Floor: decode, u2netp once (rembg, "
            "onnxruntime's default threads), PNG (level 1) + one flat JPG (q90). Plain loop: "
            "decode, u2netp once with the pipeline's threads, PNG + one "
            f"JPG. {args.runs} alternating rounds after a warm-up; server on "
            f"{'PostgreSQL' if args.postgres else 'SQLite'}.",
            "",
            "| round | pipeline s (shoot run ended) | floor s | ratio to floor | loop s "
            "| ratio to loop | pipeline CPU s (in stages) | floor CPU s | loop CPU s | load (1 min) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *[
                f"| {i} | {r['pipeline_s']} ({r['shoot_run_s']}) | {r['floor_s']} "
                f"| {r['floor_ratio']} | {r['loop_s']} | {r['ratio']} "
                f"| {r['pipeline_cpu_s']} ({r['stages_total_cpu_s']}) | {r['floor_cpu_s']} "
                f"| {r['loop_cpu_s']} | {r['load_1min']:.2f} |"
                for i, r in enumerate(rows)
            ],
            "",
            f"CPU seconds per stage, last round: {rows[-1]['stage_cpu_s']}; by process (shoot "
            f"process, server, worker process with its children): "
            f"{rows[-1]['pipeline_cpu_by_process_s']}",
            "",
            f"Against the floor: median ratio **{data['floor_median_ratio']}** (ratio of medians "
            f"{data['floor_ratio_of_medians']}). Against the plain loop: median ratio "
            f"**{data['median_ratio']}** (ratio of medians {data['ratio_of_medians']}).",
        ]
    )
    name = f"pipeline-{width}x{height}"
    print(write_result(name, data, markdown).read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
