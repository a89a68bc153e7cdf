"""Per-stage cost of one image, and the layered PSD against PNG at full size.

    python -m benchmarks.stages [--runs 5] [--sizes 2000x1333,6000x4000]

For each size: medians over runs of decode (full and reduced), inference (u2netp),
mask upscale, PNG, PSD, each channel JPG, and DAM registration (local catalog).
Target (issue 5): at 6000x4000 the PSD costs at most 2x the PNG (compress_level 1).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from benchmarks.common import camera_like, median, timed, write_result
from cutline.base.settings import get_settings
from cutline.imaging import renditions
from cutline.imaging.codec import decode_image
from cutline.imaging.segmenter import get_session, predict_alpha
from cutline.imaging.xmp import build_packet
from rules import load_presets
from tasks.cutout import full_resolution_mask


def measure(size: tuple[int, int], runs: int) -> dict[str, float]:
    """Median seconds per stage for one image of ``size``."""
    settings = get_settings()
    session = get_session(settings.model, settings.resolved_model_home)
    presets = load_presets(settings.presets_file)
    buf = io.BytesIO()
    camera_like(*size).save(buf, format="JPEG", quality=92)
    data = buf.getvalue()
    xmp = build_packet({"JobID": "BENCH", "SKU": "BENCH-1", "Channels": "web"})
    samples: dict[str, list[float]] = {}

    def add(stage: str, seconds: float) -> None:
        samples.setdefault(stage, []).append(seconds)

    with tempfile.TemporaryDirectory() as tmp:
        from dam_adapters import ApprovalState, AssetSubmission
        from dam_adapters.local_catalog import LocalCatalog

        catalog = LocalCatalog(Path(tmp) / "catalog")
        for run in range(runs):
            seconds, (small, info) = timed(
                decode_image,
                data,
                "bench.jpg",
                max_pixels=10**9,
                max_side=settings.model_input_max_side,
            )
            add("decode_reduced", seconds)
            seconds, alpha = timed(predict_alpha, session, small)
            add("inference", seconds)
            seconds, mask = timed(full_resolution_mask, alpha, (info.width, info.height))
            add("mask_upscale", seconds)
            seconds, (rgb, _) = timed(decode_image, data, "bench.jpg", max_pixels=10**9)
            add("decode_full", seconds)
            rgba = renditions.cutout_rgba(rgb, mask)
            seconds, png = timed(renditions.png_bytes, rgba, xmp, compress_level=1)
            add("png", seconds)
            seconds, psd = timed(renditions.psd_bytes, rgb, mask, xmp)
            add("psd", seconds)
            for name, preset in presets.presets.items():
                seconds, _ = timed(renditions.channel_jpg_bytes, rgba, preset, xmp)
                add(f"jpg_{name}", seconds)
            png_path = Path(tmp) / f"r{run}.png"
            png_path.write_bytes(png)
            submission = AssetSubmission(
                job_id="BENCH",
                sku="BENCH-1",
                source="bench.jpg",
                source_name="bench.jpg",
                content_hash=f"{run:064d}",
                approval_state=ApprovalState.AUTO_APPROVED,
                renditions={"png": str(png_path)},
            )
            seconds, _ = timed(catalog.register, submission)
            add("dam_register", seconds)
            if run == 0:
                sizes_mb = {"png_mb": len(png) / 1e6, "psd_mb": len(psd) / 1e6}
    result = {stage: round(median(values), 4) for stage, values in samples.items()}
    result.update({k: round(v, 1) for k, v in sizes_mb.items()})
    result["psd_over_png"] = round(result["psd"] / result["png"], 3)
    return result


def main() -> None:
    """Run and write results/stages.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="2000x1333,6000x4000")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    results = {f"{w}x{h}": measure((w, h), args.runs) for w, h in sizes}
    stages = [
        k for k in next(iter(results.values())) if not k.endswith("_mb") and k != "psd_over_png"
    ]
    lines = [
        "# Per-stage time per image (median seconds)",
        "",
        f"{args.runs} runs per size, model u2netp, PNG compress_level 1, PSD RLE. Machine noise: compare ratios.",
        "",
        "| stage | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
        *[f"| {s} | " + " | ".join(f"{r[s]:.3f}" for r in results.values()) + " |" for s in stages],
        "| PNG size (MB) | " + " | ".join(f"{r['png_mb']}" for r in results.values()) + " |",
        "| PSD size (MB) | " + " | ".join(f"{r['psd_mb']}" for r in results.values()) + " |",
        "| **PSD / PNG time** | "
        + " | ".join(f"**{r['psd_over_png']}**" for r in results.values())
        + " |",
        "",
        "Target: PSD / PNG time <= 2.0 at 6000x4000.",
    ]
    path = write_result("stages", {"runs": args.runs, "results": results}, "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
