"""CPU cost per image of the shipped model mixture against the run's model alone, on a mixed
shoot of real photos (issue 29: at most 1.5x).

    python -m benchmarks.model_mix [--data ../shared/evaldata-dev] [--rounds 3] [--every 1]

Every image of the reference folder (its index.csv gives each a category) goes through every
per-image stage a shoot runs (ingest, cutout, score, route, export, register; no Prefect), once
with the rules as shipped (u2netp, MODNet as the fallback of doubtful cutouts) and once with
u2netp alone, alternating, each round in fresh folders so nothing is reused. Reported per
configuration: medians over rounds of CPU seconds per image (this process and all its
threads), wall seconds per image, how many images the fallback cut again and kept.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import bench_settings, median, write_result

ALONE, SHIPPED = "u2netp alone", "as shipped"


def one_pass(data: str, out: Path, shipped: bool, every: int = 1) -> dict[str, float]:
    """Every image through the plain loop's stages once; its CPU and wall seconds."""
    from cutline.base.naming import safe_component
    from cutline.base.settings import get_settings
    from cutline.domain.items import ImageItem
    from cutline.domain.manifest import clean_category
    from cutline.evaluation.eval_set import load_eval_set
    from cutline.imaging.confidence import FIRST_MODEL_SCORE
    from tasks.evaluate import eval_context
    from tasks.stages import run_plain

    settings = get_settings()
    ctx = eval_context(settings.model, data, str(out), settings, label="shipped" if shipped else "")
    items = [
        ImageItem(
            index=index,
            source=case.image,
            source_name=case.name,
            image_id=f"{index:05d}-{safe_component(case.name)}",
            category=clean_category(case.category),
        )
        for index, case in enumerate(load_eval_set(data))
        if index % every == 0
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    run_plain(items, ctx)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    failed = [i.source_name for i in items if i.failed]
    assert not failed, f"images failed: {failed}"
    models = Counter(i.model for i in items)
    return {
        "images": len(items),
        "cpu_per_image": cpu / len(items),
        "wall_per_image": wall / len(items),
        "fallback_ran": sum(FIRST_MODEL_SCORE in i.signals for i in items),
        **{f"kept_{m}": n for m, n in models.items()},
    }


def main() -> None:
    """Alternate the two configurations; write results/model_mix.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(Path("../shared/evaldata-dev").resolve()))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--every", type=int, default=1, help="Take every Nth image of the folder (a sample)."
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cutline-bench-mix-"))
    settings = bench_settings(work, "model_mix", "4297")
    from cutline.imaging import model_store
    from cutline.ops import stack
    from cutline.services.limits import ensure_limits
    from rules.engine import load_rules

    for name in load_rules(settings.rules_file).models_named():
        model_store.fetch(name, settings.resolved_model_home)
    passes: dict[str, list[dict[str, float]]] = {ALONE: [], SHIPPED: []}
    try:
        with stack.using_stack(settings):  # the register stage takes DAM write slots from Prefect
            ensure_limits(settings)
            one_pass(args.data, work / "warm-up", True, args.every)  # models loaded, files cached
            for r in range(args.rounds):
                order = (ALONE, SHIPPED) if r % 2 == 0 else (SHIPPED, ALONE)
                for name in order:
                    out = work / f"round-{r}-{name}"
                    passes[name].append(one_pass(args.data, out, name == SHIPPED, args.every))
    finally:
        stack.down(settings)
    ratios = [
        s["cpu_per_image"] / a["cpu_per_image"]
        for a, s in zip(passes[ALONE], passes[SHIPPED], strict=True)
    ]
    summary = {
        name: {
            "cpu_per_image": median([p["cpu_per_image"] for p in runs]),
            "wall_per_image": median([p["wall_per_image"] for p in runs]),
            "last": runs[-1],
        }
        for name, runs in passes.items()
    }
    last = passes[SHIPPED][-1]
    lines = [
        f"# Model mixture cost ({args.rounds} alternating rounds, {last['images']} images of "
        f"{args.data}"
        + (f" (every {args.every}th)" if args.every > 1 else "")
        + f", {os.cpu_count()} cores)",
        "",
        "| configuration | CPU s / image | wall s / image |",
        "|---|---|---|",
        *(
            f"| {name} | {s['cpu_per_image']:.2f} | {s['wall_per_image']:.2f} |"
            for name, s in summary.items()
        ),
        "",
        f"CPU ratio as shipped / alone: median {median(ratios):.2f} (rounds: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f"); target <= 1.5. The fallback cut {last['fallback_ran']} of {last['images']} "
        "images again; kept: "
        + ", ".join(
            f"{k.removeprefix('kept_')} {v}" for k, v in last.items() if k.startswith("kept_")
        )
        + ".",
    ]
    name = "model_mix" if args.every == 1 else f"model_mix_every{args.every}"
    path = write_result(
        name,
        {"rounds": args.rounds, "data": args.data, "passes": passes, "ratios": ratios},
        "\n".join(lines),
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
