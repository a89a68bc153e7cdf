"""Reruns: an unchanged shoot again, and the same shoot with a changed rules file.

    python -m benchmarks.rerun [--count 200] [--size 2000x1333] [--runs 3] [--postgres]

Each round: a first run into a fresh job folder, then a rerun of the unchanged shoot
(target: at most 10% of the first run's time), then a rerun with a stricter rules file
(re-routes without recomputing cutouts; review runs are not requested in this benchmark
because every image stays in the auto lane under a lower threshold).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import bench_settings, median, timed, write_jpegs, write_result

RULES = 'version: "{version}"\nconfidence: {{review_below: {threshold}}}\n'


def main() -> None:
    """Run the rounds and write results/rerun.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", default="2000x1333")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-bench-"))
    rules = work / "rules.yaml"
    settings = bench_settings(work, "rerun", "4292", args.postgres, CUTLINE_RULES_FILE=str(rules))
    from cutline.base.settings import reload_settings
    from cutline.ops import stack
    from flows.process_shoot import process_shoot

    shoot = work / "shoot"
    write_jpegs(shoot, args.count, (width, height))
    first, unchanged, rerouted = [], [], []
    try:
        with stack.using_stack(settings):
            for round_ in range(args.runs):
                out = str(work / f"out{round_}")
                rules.write_text(RULES.format(version="a", threshold=0.0))
                reload_settings()
                seconds, summary = timed(
                    process_shoot, shoot=str(shoot), job_id="RERUN", output_root=out
                )
                first.append(seconds)
                seconds, again = timed(
                    process_shoot, shoot=str(shoot), job_id="RERUN", output_root=out
                )
                assert again.lanes == summary.lanes
                unchanged.append(seconds)
                rules.write_text(RULES.format(version="b", threshold=0.01))
                reload_settings()
                seconds, _ = timed(process_shoot, shoot=str(shoot), job_id="RERUN", output_root=out)
                rerouted.append(seconds)
                shutil.rmtree(out, ignore_errors=True)
                print(
                    f"round {round_}: first {first[-1]:.1f} s, unchanged {unchanged[-1]:.1f} s, rules changed {rerouted[-1]:.1f} s"
                )
    finally:
        stack.down(settings)
    ratio = median(unchanged) / median(first)
    data = {
        "count": args.count,
        "size": [width, height],
        "runs": args.runs,
        "postgres": args.postgres,
        "first_seconds": first,
        "unchanged_seconds": unchanged,
        "rules_changed_seconds": rerouted,
        "unchanged_over_first": round(ratio, 4),
        "rules_changed_over_first": round(median(rerouted) / median(first), 4),
    }
    markdown = "\n".join(
        [
            "# Reruns",
            "",
            f"{args.count} camera-like JPEGs {width}x{height}, u2netp, all renditions; {args.runs} rounds; "
            f"Prefect server on {'PostgreSQL' if args.postgres else 'SQLite'}.",
            "",
            "| run | median s | / first run |",
            "|---|---|---|",
            f"| first | {median(first):.1f} | 1.00 |",
            f"| rerun, unchanged | {median(unchanged):.1f} | **{ratio:.3f}** |",
            f"| rerun, rules file changed | {median(rerouted):.1f} | {median(rerouted) / median(first):.3f} |",
            "",
            "Target: an unchanged rerun takes at most 0.10 of the first run.",
        ]
    )
    print(write_result("rerun", data, markdown).read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
