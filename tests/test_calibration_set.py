"""The calibration set's recipe: composites with exact ground truth, split by subject, and
the same files every time it is rebuilt."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cutline.evaluation.calibration_set import (
    BACKGROUNDS,
    build_calibration_set,
    frame_cuts,
    studio_background,
)
from cutline.evaluation.eval_set import load_eval_set


def _source(folder: Path, subjects: int = 4) -> Path:
    """A small evaluation set: soft-edged discs of different colours on busy backgrounds."""
    rng = np.random.default_rng(11)
    rows = []
    for n in range(subjects):
        yy, xx = np.mgrid[0:160, 0:200]
        distance = np.hypot(yy - 80, xx - 100)
        alpha = np.clip((55 - distance) / 10, 0, 1)  # a 10 px soft edge, like fur
        colour = np.array([60 + 40 * n, 180 - 30 * n, 90], dtype=np.float64)
        busy = rng.integers(0, 255, (160, 200, 3)).astype(np.float64)
        photo = alpha[..., None] * colour + (1 - alpha[..., None]) * busy
        (folder / "image").mkdir(parents=True, exist_ok=True)
        (folder / "alpha").mkdir(exist_ok=True)
        Image.fromarray(photo.astype(np.uint8)).save(folder / "image" / f"s{n}.png")
        Image.fromarray((alpha * 255).astype(np.uint8)).save(folder / "alpha" / f"s{n}.png")
        rows.append({"image": f"image/s{n}.png", "alpha": f"alpha/s{n}.png", "category": "plush"})
    with (folder / "index.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "alpha", "category"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _digest(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.mark.slow  # pymatting compiles its foreground estimation with numba on first use
def test_the_set_is_split_by_subject_has_exact_truth_and_rebuilds_identically(tmp_path: Path):
    source = _source(tmp_path / "source")
    out = tmp_path / "set"
    counts = build_calibration_set(str(source), out, tune_variants=3, holdout_variants=4)
    assert counts == {"tune": 2 + 2 * 3, "holdout": 2 + 2 * 4}  # real photos + composites

    parts = {}
    for part in ("tune", "holdout"):
        cases = load_eval_set(str(out / part))  # `cutline eval` reads each part as it is
        parts[part] = {c.subject for c in cases}
        for case in cases:
            if "/real/" in case.image:
                continue
            photo = np.asarray(Image.open(case.image), np.float64)
            truth = np.asarray(Image.open(case.alpha), np.float64) / 255
            assert truth.shape == photo.shape[:2]
            assert 0.01 < truth.mean() < 0.9 and (truth == 1).any() and (truth == 0).any()
            edge = (truth > 0.1) & (truth < 0.9)
            assert edge.sum() > 50  # the soft edge came along, not a hard cut-out
            # Where the truth is clear, the photo is backdrop: smooth, not the busy source.
            clear = photo[truth == 0]
            assert clear.std(axis=0).max() < 25
            # The photo is exactly alpha * F + (1 - alpha) * B with the F written beside it:
            # where the subject is solid, the photo is F (JPEG's error aside).
            colours = np.asarray(Image.open(case.foreground), np.float64)
            solid = truth == 1
            assert np.abs(photo[solid] - colours[solid]).mean() < 4
    assert not parts["tune"] & parts["holdout"]  # no subject is on both sides
    first = _digest(out)
    again = tmp_path / "again"  # the same recipe through the CLI door
    command = [sys.executable, "-m", "cutline", "calibration-set", str(source), str(again)]
    command += ["--tune-variants", "3", "--holdout-variants", "4"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tune 8 images, holdout 10" in run.stdout and "cutline eval" in run.stdout
    assert _digest(again) == first  # the recipe, not the files, is what the repo keeps


def test_backdrops_are_smooth_studio_paper_in_their_colour():
    rng = np.random.default_rng(0)
    for name, colour in BACKGROUNDS.items():
        paper = studio_background(name, (300, 200), rng) * 255
        assert paper.shape == (200, 300, 3)
        assert np.abs(paper.mean(axis=(0, 1)) - colour).max() < 40
        rows = paper.mean(axis=(1, 2))
        assert np.abs(np.diff(rows)).max() < 3  # a sweep, not an edge


def test_frame_cuts_are_the_sides_the_subject_runs_into():
    alpha = np.zeros((50, 40), np.float32)
    alpha[20:, 10:30] = 1.0  # a bust cut by the bottom of the frame
    assert frame_cuts(alpha) == {"bottom"}
    alpha[:, :] = 0
    alpha[10:40, 10:30] = 1.0
    assert frame_cuts(alpha) == frozenset()
