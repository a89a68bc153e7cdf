"""Small images made by the tests themselves (no shared data needed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    """Encode an image to bytes in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def gradient_rgb(width: int = 64, height: int = 48) -> Image.Image:
    """An RGB gradient, so orientation and colour changes are visible in pixels."""
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, axis=1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 128)], axis=2))


def centred_mask(width: int, height: int, fraction: float = 0.5) -> Image.Image:
    """A mask with a centred opaque rectangle covering ``fraction`` of each side."""
    mask = np.zeros((height, width), dtype=np.uint8)
    dx, dy = int(width * (1 - fraction) / 2), int(height * (1 - fraction) / 2)
    mask[dy : height - dy, dx : width - dx] = 255
    return Image.fromarray(mask)


def product_shoot(folder, count: int, size: tuple[int, int] = (320, 240)) -> list[str]:
    """``count`` distinct product photos (no manifest; SKUs come from the file names)."""
    from cutline.imaging.samples import DEFAULT_SAMPLES, render_sample

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        sample = DEFAULT_SAMPLES[index % 2]  # a box and a round product: no always-review category
        name = f"K-{index:03d}_front.jpg"
        (folder / name).write_bytes(encode(render_sample(sample, size, seed=index), "JPEG"))
        names.append(name)
    return names
