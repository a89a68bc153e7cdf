"""Helpers for review tests: wait for suspended runs, resume them as the UI does."""

from __future__ import annotations

from uuid import UUID

import orjson

from cutline.services.review_queue import ReviewEntry, list_reviews, resume_review, wait_for_outcome
from tests.waiting import wait_until


def wait_for_reviews(settings, job: str, count: int, timeout: float = 180.0) -> list[ReviewEntry]:
    """Wait until ``count`` reviews of ``job`` are waiting (suspended); return them in order."""

    def waiting() -> list[ReviewEntry] | None:
        entries = [
            e for e in list_reviews(settings, settings.ui_url, job) if e.state == "Suspended"
        ]
        return entries if len(entries) >= count else None

    return wait_until(waiting, f"{count} waiting reviews of {job}", timeout=timeout)


def ui_form(
    decision: str, retoucher: str = "Ana Retoucher", retouched_file: str = "", note: str = ""
) -> dict:
    """Exactly the JSON the Prefect UI's Resume form submits for ReviewDecision."""
    return {
        "decision": decision,
        "retouched_file": retouched_file,
        "retoucher": retoucher,
        "note": note,
    }


def decide(run_id: str, form: dict, timeout: float = 180.0):
    """Resume a review with a form and wait for it to land or ask again."""
    resume_review(run_id, form)
    return wait_for_outcome(run_id, timeout=timeout)


def form_description(run_id: str) -> str:
    """The text currently shown above the run's Resume form: its markdown with the escapes
    that keep manifest values inert taken out, so it reads as the retoucher reads it."""
    from prefect.client.orchestration import get_client
    from prefect.input import keyset_from_paused_state

    from cutline.base.markdown import unescaped

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        keyset = keyset_from_paused_state(run.state)
        markdown = orjson.loads(client.read_flow_run_input(UUID(run_id), keyset["description"]))
        return unescaped(markdown)


def form_schema(run_id: str) -> dict:
    """The JSON schema of the run's current Resume form (what the Prefect UI renders)."""
    from prefect.client.orchestration import get_client
    from prefect.input import keyset_from_paused_state

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        keyset = keyset_from_paused_state(run.state)
        return orjson.loads(client.read_flow_run_input(UUID(run_id), keyset["schema"]))


def form_defaults(run_id: str) -> dict:
    """The values the run's current Resume form starts with (its schema's defaults)."""
    schema = form_schema(run_id)
    return {
        name: field["default"] for name, field in schema["properties"].items() if "default" in field
    }


def retouched_png(path, alpha) -> str:
    """A retouched cutout as a retoucher exports it: an RGBA PNG with ``alpha`` (2-D uint8)."""
    import numpy as np
    from PIL import Image

    alpha = np.asarray(alpha, dtype=np.uint8)
    rgba = Image.new("RGBA", (alpha.shape[1], alpha.shape[0]), (10, 20, 30, 0))
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)
    return str(path)


def layered_psd(path, layers_alpha, composite_alpha) -> str:
    """A layered PSD whose one visible layer has ``layers_alpha`` and whose saved composite
    (what viewers and a flat reader show) has ``composite_alpha``: equal for an honest file,
    different for one saved without 'Maximize compatibility' or edited by a careless tool."""
    import numpy as np
    from PIL import Image
    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer
    from psd_tools.constants import Compression

    def rgba(alpha) -> Image.Image:
        alpha = np.asarray(alpha, dtype=np.uint8)
        image = Image.new("RGBA", (alpha.shape[1], alpha.shape[0]), (200, 120, 40, 0))
        image.putalpha(Image.fromarray(alpha))
        return image

    layer = rgba(layers_alpha)
    psd = PSDImage.new("RGBA", layer.size)
    PixelLayer.frompil(layer, psd, "Cutout")
    header = psd._record.header
    psd._record.image_data.compression = Compression.RLE
    psd._record.image_data.set_data(
        [band.tobytes() for band in rgba(composite_alpha).split()], header
    )
    psd._updated = False  # keep the composite given, as a tool that did not re-render would
    with open(path, "wb") as out:
        psd.save(out)
    return str(path)


def run_cli(*args: str, timeout: float = 300):
    """`cutline ARGS...` in a process of its own, as a person types it; its result."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "cutline", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=timeout,
    )
