"""Profile one batch through the shoot's stages, without Prefect, to see where time goes.

    python -m benchmarks.profile_batch [--count 8] [--size 2000x1333] [--html out.html]

Runs every stage but the review request (`tasks.stages.run_plain` with the shipped settings:
second view on, every rendition) on ``count`` camera-like images, about a third in the review
lane, under pyinstrument (`pip install pyinstrument`), after one image to warm the model up.
Also prints the per-stage wall and CPU seconds each item recorded.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.common import bench_settings, write_jpegs, write_manifest


def main() -> None:
    """Profile and print the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--size", default="2000x1333")
    parser.add_argument("--html", default="")
    args = parser.parse_args()
    from pyinstrument import Profiler

    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-profile-"))
    settings = bench_settings(work, "profile", "4296")
    shoot = work / "shoot"
    write_manifest(shoot, write_jpegs(shoot, args.count, (width, height)), 0.3)

    from cutline.base.settings import get_settings
    from cutline.domain.items import JobLayout
    from cutline.domain.run_config import RunConfig
    from cutline.ops import stack
    from cutline.services.limits import ensure_limits
    from tasks.context import ShootContext
    from tasks.ingest import plan_shoot
    from tasks.stages import run_plain

    def context(job: str) -> ShootContext:
        layout = JobLayout.for_job(str(work / "out"), job)
        return ShootContext(
            job_id=job,
            shoot=str(shoot),
            job_root=layout.root,
            output_root=str(work / "out"),
            config=RunConfig.freeze(get_settings()),
        )

    try:
        with stack.using_stack(settings):
            ensure_limits(settings)
            manifest = str(shoot / "manifest.csv")
            warm = context("WARM")
            run_plain(plan_shoot.fn(warm, manifest, settings.batch_size).items()[:1], warm)
            ctx = context("PROFILE")
            items = plan_shoot.fn(ctx, manifest, settings.batch_size).items()
            profiler = Profiler(interval=0.002)
            with profiler:
                run_plain(items, ctx)
    finally:
        stack.down(settings)
    wall, cpu = defaultdict(float), defaultdict(float)
    for item in items:
        for stage, seconds in item.seconds.items():
            wall[stage] += seconds
            cpu[stage] += item.cpu_seconds.get(stage, 0.0)
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    print("stage      wall s   CPU s (this thread)   per image")
    for stage in wall:
        print(f"{stage:10} {wall[stage]:7.2f} {cpu[stage]:10.2f} {wall[stage] / len(items):12.3f}")
    if args.html:
        Path(args.html).write_text(profiler.output_html())


if __name__ == "__main__":
    main()
