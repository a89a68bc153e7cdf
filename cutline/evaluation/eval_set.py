"""An evaluation set: images, their ground-truth alpha mattes or masks, and categories, listed
in an index.csv (image, alpha, category; paths relative to the set's folder; an optional
subject column names what each image shows, so several shots of one product are kept together
when the threshold is cross-validated)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pydantic import BaseModel

from cutline.base import storage
from cutline.base.errors import ConfigError

REQUIRED_COLUMNS = ("image", "alpha", "category")


class EvalCase(BaseModel):
    """One image of the set with its ground truth."""

    image: str
    alpha: str
    category: str
    name: str  # the image's path as written in the index
    subject: str = ""  # what the image shows; images of one subject are cross-validated together
    foreground: str = ""  # the subject's true colours (optional): edge colour error is measured


def load_eval_set(folder: str) -> list[EvalCase]:
    """The cases of the set in ``folder``; errors name the bad line and what to fix."""
    index = storage.join(folder, "index.csv")
    if not storage.exists(index):
        raise ConfigError(
            f"No index.csv in {folder}.",
            hint="List the images as CSV with columns image, alpha, category (paths relative "
            "to the folder).",
        )
    reader = csv.DictReader(io.StringIO(storage.read_bytes(index).decode("utf-8-sig")))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(
            f"{index} lacks the column(s) {', '.join(missing)}; found {reader.fieldnames}.",
            hint="The columns are image, alpha, category.",
        )
    cases = []
    for line, row in enumerate(reader, start=2):
        image, alpha = (row["image"] or "").strip(), (row["alpha"] or "").strip()
        foreground = (row.get("foreground") or "").strip()
        if not image or not alpha:
            raise ConfigError(f"{index} line {line}: image and alpha must both be given.")
        paths = Path(image).parts + Path(alpha).parts + Path(foreground).parts
        if any(part == ".." for part in paths):
            raise ConfigError(f"{index} line {line}: paths must stay inside {folder} (no '..').")
        cases.append(
            EvalCase(
                image=storage.join(folder, image),
                alpha=storage.join(folder, alpha),
                category=(row["category"] or "").strip() or "(none)",
                name=image,
                subject=(row.get("subject") or "").strip() or image,
                foreground=storage.join(folder, foreground) if foreground else "",
            )
        )
    if not cases:
        raise ConfigError(f"{index} lists no images.")
    return cases
