"""Product-like sample images made by code, for the demo and the tests (no downloads)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class Sample:
    """One generated product shot and its manifest data.

    The deadline is kept as days from the day the shoot is written (negative: already past),
    so the demo and the tests mean the same thing on any day they run.
    """

    filename: str
    sku: str
    category: str
    shape: str
    colour: tuple[int, int, int]
    channels: str = "web"
    due_in_days: int = 7
    brief: str = ""

    def deadline(self, today: date | None = None) -> str:
        """The manifest deadline (ISO date) for a shoot written on ``today`` (default: now)."""
        return ((today or date.today()) + timedelta(days=self.due_in_days)).isoformat()


DEFAULT_SAMPLES: tuple[Sample, ...] = (
    Sample(
        "SKU-1001_front.jpg",
        "SKU-1001",
        "footwear",
        "box",
        (176, 48, 40),
        "web;marketplace",
        5,
        "Red trainer box, keep the soft floor shadow out.",
    ),
    Sample(
        "SKU-1002_front.jpg",
        "SKU-1002",
        "homeware",
        "round",
        (40, 90, 160),
        "web",
        4,
        "Blue ceramic bowl.",
    ),
    Sample(
        "SKU-1003_front.jpg",
        "SKU-1003",
        "apparel",
        "tall",
        (30, 120, 70),
        "web;social",
        6,
        "Green bottle-shaped tote, front view.",
    ),
    Sample(
        "SKU-2001_front.jpg",
        "SKU-2001",
        "glassware",
        "tall",
        (150, 170, 190),
        "web",
        3,
        "Perfume bottle: keep the glass see-through.",
    ),
)


def _background(width: int, height: int, seed: int) -> np.ndarray:
    """A seamless studio sweep: light grey, brighter at the top, with faint sensor noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(238, 212, height, dtype=np.float32)[:, None, None]
    bg = np.repeat(np.repeat(ramp, width, axis=1), 3, axis=2)
    bg += rng.normal(0, 1.5, size=bg.shape).astype(np.float32)
    return bg


def render_sample(sample: Sample, size: tuple[int, int] = (960, 720), seed: int = 0) -> Image.Image:
    """A product on a seamless background with a soft contact shadow."""
    return render_sample_with_mask(sample, size, seed)[0]


def render_sample_with_mask(
    sample: Sample, size: tuple[int, int] = (960, 720), seed: int = 0
) -> tuple[Image.Image, Image.Image]:
    """A product shot and its true alpha (the product's shape, shadow excluded), for
    evaluations whose answer is known."""
    width, height = size
    canvas = Image.fromarray(np.clip(_background(width, height, seed), 0, 255).astype(np.uint8))
    cx, base = width // 2, int(height * 0.86)
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).ellipse(
        (cx - width * 0.22, base - height * 0.03, cx + width * 0.22, base + height * 0.03), fill=90
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(radius=max(4, width // 80)))
    canvas.paste((120, 120, 120), (0, 0), shadow)
    subject = Image.new("L", size, 0)
    draw = ImageDraw.Draw(subject)
    if sample.shape == "box":
        draw.rounded_rectangle(
            (cx - width * 0.2, height * 0.3, cx + width * 0.2, base), radius=width // 60, fill=255
        )
    elif sample.shape == "round":
        draw.ellipse((cx - width * 0.2, base - height * 0.45, cx + width * 0.2, base), fill=255)
    else:
        draw.rounded_rectangle(
            (cx - width * 0.1, height * 0.18, cx + width * 0.1, base), radius=width // 25, fill=255
        )
        draw.rectangle(
            (cx - width * 0.035, height * 0.1, cx + width * 0.035, height * 0.2), fill=255
        )
    shading = np.linspace(1.15, 0.75, width, dtype=np.float32)[None, :, None]
    body = np.clip(np.array(sample.colour, dtype=np.float32)[None, None, :] * shading, 0, 255)
    body_img = Image.fromarray(np.repeat(body, height, axis=0).astype(np.uint8))
    alpha = subject.filter(ImageFilter.GaussianBlur(radius=1))
    canvas.paste(body_img, (0, 0), alpha)
    return canvas, alpha


def write_sample_shoot(
    folder: Path,
    samples: tuple[Sample, ...] = DEFAULT_SAMPLES,
    size: tuple[int, int] = (960, 720),
    today: date | None = None,
) -> Path:
    """Write the sample images and a manifest.csv into ``folder``; return the manifest path.

    Deadlines are counted from ``today`` (default: the day it runs)."""
    today = today or date.today()
    folder.mkdir(parents=True, exist_ok=True)
    for index, sample in enumerate(samples):
        buf = io.BytesIO()
        render_sample(sample, size, seed=index).save(buf, format="JPEG", quality=92)
        (folder / sample.filename).write_bytes(buf.getvalue())
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "filename",
                "sku",
                "category",
                "campaign",
                "channels",
                "deadline",
                "brief",
                "reference",
            ]
        )
        for sample in samples:
            writer.writerow(
                [
                    sample.filename,
                    sample.sku,
                    sample.category,
                    "SS27",
                    sample.channels,
                    sample.deadline(today),
                    sample.brief,
                    "",
                ]
            )
    return manifest
