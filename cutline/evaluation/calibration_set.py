"""The recipe of the confidence calibration set: real photos with exact ground truth, and each
of their subjects re-lit and composited onto studio backgrounds (grey sweep, white, charcoal,
coloured seamless) so the set is large enough to promise a precision.

A composite's ground truth is exact by construction: the image *is* ``alpha * F + (1 - alpha)
* B``, with the subject's colours ``F`` recovered from the photo by pymatting's foreground
estimation (so hair and fur do not carry their old background onto the new one). ``F`` is
written too (``foreground/``), so `cutline eval` measures the colour error of cutout edges. The set is
rebuilt from its sources by `cutline calibration-set` (same seed, same files); nothing
generated is kept in the repository.

Subjects are split into a *tune* part (signals, weights and the threshold are chosen on it)
and a *holdout* part (only measured), by subject, so no holdout image shares a subject with
anything tuned on.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from cutline.base.errors import ConfigError
from cutline.evaluation.eval_set import EvalCase, load_eval_set

# Backgrounds a studio shoots on. Colours are sRGB 0-255 at the brightest point of the sweep.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey-sweep": (206, 206, 204),
    "white": (248, 248, 246),
    "charcoal": (52, 52, 54),
    "seamless-blue": (160, 186, 214),
    "seamless-blush": (228, 188, 182),
    "seamless-sage": (168, 188, 158),
    "seamless-butter": (238, 222, 158),
    "seamless-terracotta": (186, 106, 78),
}
# Subjects not composited: a clear-glass ground truth marks the glass but leaves out what
# shows through it and beside it, so re-lighting it onto paper makes a picture no studio
# shoots. Their real photos stay in the set.
NOT_COMPOSITED = frozenset({"glass_transparent", "glass", "glassware"})
CANVASES = ((1200, 1500), (1500, 1000), (1200, 1200))
_SUBJECT_MAX_SIDE = 1100
HOLDOUT_EVERY = 2  # every second subject of each category (in index order) is held out


@dataclass(frozen=True)
class Subject:
    """A source photo whose subject is composited: its case and its split."""

    case: EvalCase
    key: str  # short stable name for file names
    split: str  # "tune" or "holdout"


def split_subjects(cases: list[EvalCase]) -> list[Subject]:
    """Each case with its split: per category, every ``HOLDOUT_EVERY``-th case (starting with
    the second) is held out, so both parts hold every category that has several cases."""
    seen: dict[str, int] = {}
    subjects = []
    for case in cases:
        n = seen.get(case.category, 0)
        seen[case.category] = n + 1
        split = "holdout" if n % HOLDOUT_EVERY == 1 else "tune"
        digest = hashlib.sha1(case.name.encode()).hexdigest()[:6]
        stem = Path(case.name).stem[:24].replace(" ", "_")
        subjects.append(Subject(case=case, key=f"{stem}-{digest}", split=split))
    return subjects


def _rng(*parts: object) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")
    return np.random.default_rng(seed)


def studio_background(name: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A seamless studio backdrop (float RGB in [0, 1], HxWx3): the paper's colour, darker
    towards the top and the far corners as light falls off, with a little sensor grain."""
    width, height = size
    base = np.array(BACKGROUNDS[name], dtype=np.float32) / 255.0
    base = np.clip(base * rng.uniform(0.93, 1.04) + rng.normal(0, 0.01, 3), 0, 1)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    sweep_at = rng.uniform(0.55, 0.8)
    falloff = rng.uniform(0.06, 0.2)
    vertical = 1.0 - falloff * np.clip((sweep_at - y) / sweep_at, 0, 1) ** 1.5
    pool_x = rng.uniform(-0.3, 0.3)
    vignette = 1.0 - rng.uniform(0.02, 0.12) * ((x - pool_x) ** 2)
    light = (vertical * vignette)[..., None]
    grain = rng.normal(0, rng.uniform(0.002, 0.008), (height, width, 1)).astype(np.float32)
    return np.clip(base[None, None, :] * light + grain, 0, 1)


def relight(fg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The subject's colours under a slightly different light: exposure, contrast and white
    balance shifted within what one studio session shows."""
    gain = rng.uniform(0.85, 1.15)
    gamma = rng.uniform(0.9, 1.12)
    tint = np.clip(1.0 + rng.normal(0, 0.035, 3), 0.9, 1.1).astype(np.float32)
    return np.clip(gain * np.power(np.clip(fg, 0, 1), gamma) * tint, 0, 1)


def frame_cuts(alpha: np.ndarray) -> frozenset[str]:
    """The sides where the photo's frame cuts the subject (its alpha runs into the edge): a
    composite keeps those sides on its own frame edge, as a photo cropped there would."""
    sides = {"top": alpha[0], "bottom": alpha[-1], "left": alpha[:, 0], "right": alpha[:, -1]}
    return frozenset(side for side, line in sides.items() if (line > 0.5).mean() > 0.02)


def _crop_to_subject(alpha: np.ndarray, fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero((alpha > 0.02).any(axis=1))
    cols = np.flatnonzero((alpha > 0.02).any(axis=0))
    if rows.size == 0:
        raise ConfigError("the ground truth holds no subject")
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return fg[top:bottom, left:right], alpha[top:bottom, left:right]


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if arr.ndim == 2:
        img = Image.fromarray(arr.astype(np.float32), mode="F")
        return np.asarray(img.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    channels = [_resize(arr[..., c], size) for c in range(arr.shape[2])]
    return np.stack(channels, axis=2)


def subject_layers(case: EvalCase) -> tuple[np.ndarray, np.ndarray, frozenset[str]]:
    """The subject's colours (float RGB, foreground estimated by pymatting) and its alpha,
    cropped to the subject, and the sides where the photo's frame cut it."""
    from pymatting import estimate_foreground_ml

    image = Image.open(case.image).convert("RGB")
    truth = Image.open(case.alpha)
    truth = truth.getchannel("A") if truth.mode in ("RGBA", "LA") else truth.convert("L")
    if truth.size != image.size:
        truth = truth.resize(image.size, Image.Resampling.BILINEAR)
    scale = min(1.0, _SUBJECT_MAX_SIDE / max(image.size))
    if scale < 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
        truth = truth.resize(size, Image.Resampling.BILINEAR)
    rgb = np.asarray(image, dtype=np.float64) / 255.0
    alpha = np.asarray(truth, dtype=np.float64) / 255.0
    fg = estimate_foreground_ml(rgb, alpha)
    fg_crop, alpha_crop = _crop_to_subject(alpha.astype(np.float32), fg.astype(np.float32))
    return fg_crop, alpha_crop, frame_cuts(alpha)


def composite(
    fg: np.ndarray,
    alpha: np.ndarray,
    cuts: frozenset[str],
    background: str,
    rng: np.random.Generator,
) -> tuple[Image.Image, Image.Image, str, Image.Image]:
    """The subject placed on a studio backdrop at a random size and place (sometimes with a
    soft contact shadow, which is background): the photo, its exact alpha, notes, and the
    subject's true colours (what a perfect decontamination gives in the soft edge)."""
    width, height = CANVASES[int(rng.integers(len(CANVASES)))]
    fill = rng.uniform(0.5, 0.85)
    if rng.random() < 0.5:
        fg, alpha = fg[:, ::-1], alpha[:, ::-1]
        mirrored = {"left": "right", "right": "left"}
        cuts = frozenset(mirrored.get(side, side) for side in cuts)
    sh, sw = alpha.shape
    scale = min(fill * height / sh, fill * width / sw)
    if {"left", "right"} <= cuts:
        scale = width / sw
    if {"top", "bottom"} <= cuts:
        scale = height / sh
    size = (min(width, max(8, round(sw * scale))), min(height, max(8, round(sh * scale))))
    fg_s = relight(_resize(fg, size), rng)
    a_s = np.clip(_resize(alpha, size), 0, 1)
    left = int((width - size[0]) * rng.uniform(0.3, 0.7))
    top = int((height - size[1]) * rng.uniform(0.35, 0.8))
    left = 0 if "left" in cuts else width - size[0] if "right" in cuts else left
    top = 0 if "top" in cuts else height - size[1] if "bottom" in cuts else top
    canvas_alpha = np.zeros((height, width), np.float32)
    canvas_alpha[top : top + size[1], left : left + size[0]] = a_s
    canvas_fg = np.zeros((height, width, 3), np.float32)
    canvas_fg[top : top + size[1], left : left + size[0]] = fg_s
    back = studio_background(background, (width, height), rng)
    shadow = rng.random() < 0.35
    if shadow:
        blur = max(4, round(0.03 * max(size)))
        shade = Image.fromarray((canvas_alpha * 255).astype(np.uint8), mode="L")
        shade = shade.transform(
            shade.size, Image.Transform.AFFINE, (1, 0, -blur, 0, 1, -blur // 2)
        ).filter(ImageFilter.GaussianBlur(blur))
        back = back * (
            1.0 - rng.uniform(0.12, 0.3) * np.asarray(shade, np.float32)[..., None] / 255
        )
    photo = canvas_alpha[..., None] * canvas_fg + (1 - canvas_alpha[..., None]) * back
    image = Image.fromarray(np.clip(photo * 255 + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    truth = Image.fromarray(np.clip(canvas_alpha * 255 + 0.5, 0, 255).astype(np.uint8), mode="L")
    notes = f"fill {fill:.2f}, canvas {width}x{height}" + (", contact shadow" if shadow else "")
    if cuts:
        notes += ", cut by the frame at " + "/".join(sorted(cuts))
    colours = np.clip(canvas_fg * 255 + 0.5, 0, 255).astype(np.uint8)
    return image, truth, notes, Image.fromarray(colours, mode="RGB")


def _backgrounds_for(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` backdrops, the three neutral ones (a studio's usual) twice as often as each
    coloured seamless, in a shuffled but reproducible order."""
    names = list(BACKGROUNDS)
    weights = np.array([2.0 if not n.startswith("seamless") else 0.6 for n in names])
    order = list(rng.choice(names, size=count, p=weights / weights.sum()))
    neutral = ["grey-sweep", "white", "charcoal"]
    for i, name in enumerate(neutral[:count]):
        order[i] = name  # every subject appears on each neutral backdrop at least once
    return order


def _write(path: Path, image: Image.Image, **params: object) -> None:
    buf = io.BytesIO()
    image.save(buf, **params)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def build_calibration_set(
    source: str, out: Path, *, tune_variants: int = 40, holdout_variants: int = 40
) -> dict[str, int]:
    """Write ``out/tune`` and ``out/holdout``, each an evaluation set (index.csv, images, alpha)
    that `cutline eval` reads: the source's real photos in their subject's part, plus
    composites of every soft-alpha subject. Returns the image count per part."""
    cases = load_eval_set(source)
    counts = {"tune": 0, "holdout": 0}
    rows: dict[str, list[dict[str, str]]] = {"tune": [], "holdout": []}
    for subject in split_subjects(cases):
        part = out / subject.split
        rows[subject.split].append(_real_row(subject, part))
        if subject.case.category.lower() in NOT_COMPOSITED:
            continue
        fg, alpha, cuts = subject_layers(subject.case)
        variants = holdout_variants if subject.split == "holdout" else tune_variants
        rng = _rng("backgrounds", subject.key)
        for n, background in enumerate(_backgrounds_for(variants, rng)):
            item = _rng("composite", subject.key, n)
            image, truth, notes, colours = composite(fg, alpha, cuts, background, item)
            stem = f"{subject.key}-{n:02d}-{background}"
            _write(part / "image" / f"{stem}.jpg", image, format="JPEG", quality=92)
            _write(part / "alpha" / f"{stem}.png", truth, format="PNG")
            _write(part / "foreground" / f"{stem}.png", colours, format="PNG")
            rows[subject.split].append(
                {
                    "image": f"image/{stem}.jpg",
                    "alpha": f"alpha/{stem}.png",
                    "foreground": f"foreground/{stem}.png",
                    "category": subject.case.category,
                    "subject": subject.key,
                    "background": background,
                    "notes": notes,
                }
            )
    for split, items in rows.items():
        _write_index(out / split / "index.csv", items)
        counts[split] = len(items)
    return counts


def _real_row(subject: Subject, part: Path) -> dict[str, str]:
    """The source photo itself, copied into its part (real photos keep their own ground truth)."""
    image_name = f"real/{subject.key}{Path(subject.case.image).suffix.lower()}"
    alpha_name = f"real/{subject.key}-alpha{Path(subject.case.alpha).suffix.lower()}"
    for src, dst in ((subject.case.image, image_name), (subject.case.alpha, alpha_name)):
        target = part / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(src).read_bytes())
    return {
        "image": image_name,
        "alpha": alpha_name,
        "foreground": "",
        "category": subject.case.category,
        "subject": subject.key,
        "background": "real",
        "notes": f"real photo {subject.case.name}",
    }


def _write_index(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle,
            fieldnames=[
                "image",
                "alpha",
                "foreground",
                "category",
                "subject",
                "background",
                "notes",
            ],
        )
        writer.writeheader()
        writer.writerows(rows)
