"""The review lane: ask a retoucher, check the answer, and land the decision."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

from PIL import Image
from prefect import task
from prefect.events import emit_event
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL
from pydantic import BaseModel, Field

from cutline.base import storage
from cutline.base.errors import ConfigError, ImageInputError
from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.domain.limits import dam_write_slot, ensure_limits
from cutline.domain.locations import check_location
from cutline.imaging.codec import load_mask, mask_to_png_bytes
from cutline.imaging.confidence import weakest_signal
from cutline.records.ledger import record_review_outcome
from cutline.services.review_page import publish_review_page
from dam_adapters import ApprovalState, create_adapter
from rules.presets import load_presets
from tasks.context import ShootContext, run_logger
from tasks.export import load_full, write_final_renditions
from tasks.register import register_item


class ReviewDecision(RunInput):
    """The retoucher's answer, as the Resume form in the Prefect UI asks for it."""

    decision: Literal["approve", "replace", "reject"] = Field(
        description=(
            "approve: publish with the AI mask as it is. replace: publish with your retouched "
            "file instead. reject: the photo cannot be used; request a reshoot."
        ),
    )
    retouched_file: str = Field(
        default="",
        description=(
            "For replace only: path or URI of your retouched cutout (PNG/TIFF with alpha) or a "
            "grayscale mask, at the same size as the source."
        ),
    )
    retoucher: str = Field(
        min_length=1, description="Your name, recorded in the DAM with your decision."
    )
    note: str = Field(
        default="", description="Optional note; for a reject, say what the reshoot must fix."
    )


class ReviewOutcome(BaseModel):
    """What a finished review did."""

    decision: str
    retoucher: str
    dam_id: str
    approval_state: str
    renditions: list[str]


def decision_key(attempt: int) -> str:
    """The pause key of a review's ``attempt``-th request for a decision (0: the first; each
    refused answer asks again under the next key)."""
    return f"decision-{attempt}"


def decision_form(
    item: ImageItem,
    ctx: ShootContext,
    links: dict[str, str],
    problem: str = "",
    previous: dict | None = None,
) -> type[ReviewDecision]:
    """The Resume form of a review: the markdown above it and, after a refused answer, that
    answer as its starting values. No default decision: a careless Submit must not publish."""
    return ReviewDecision.with_initial_data(
        description=review_description(item, ctx, problem, links), **(previous or {})
    )


def publish_page(item: ImageItem, ctx: ShootContext, run_id: str) -> dict[str, str]:
    """Publish a review's pictures and files (once per run): its links by name; a failure
    costs the preview, never the review."""
    settings = get_settings()
    ui_run = f"{PREFECT_UI_URL.value() or settings.ui_url}/runs/flow-run/{run_id}"
    try:
        return publish_review_page(
            settings,
            item,
            ctx.job_id,
            run_id,
            ui_run,
            ctx.config.max_pixels,
            roots=[ctx.shoot, ctx.job_root],  # only the review's own files, never elsewhere
        )
    except Exception as exc:
        run_logger().warning("No review page for %s: %s", item.sku, exc)
        return {"problem": f"{type(exc).__name__}: {exc}"[:300]}


def _file_line(label: str, uri: str, url: str = "") -> str:
    """One file of the review: an http link the browser can open (from the share server),
    and where it is for tools on the studio's disks (Photoshop opens the path)."""
    if not uri:
        return f"- {label}: -"
    opened = f"[open]({url}) · " if url else ""
    return f"- {label}: {opened}`{uri}`"


def review_description(
    item: ImageItem, ctx: ShootContext, problem: str = "", links: dict[str, str] | None = None
) -> str:
    """The markdown shown above the Resume form: the pictures, what the image is, why it is
    here, and its files."""
    links = links or {}
    size = f"{item.width}x{item.height}" if item.width else "unknown size"
    lines = []
    if problem:
        lines += [
            f"> **Your last answer could not be used:** {problem}",
            "> Your answer is kept below: correct it and submit again.",
            "",
        ]
    lines += [
        f"### Review {item.sku} · {item.category or 'no category'} · job {ctx.job_id}",
        "",
    ]
    if links.get("preview"):
        lines += [
            f"![source, cutout on a checkerboard, AI mask over the source]({links['preview']})",
            "",
            f"**[Open the review page]({links['page']})** (pictures, source, AI mask, reference, "
            f"layered PSD; the link works until {links.get('expires', '-')})",
            "",
        ]
    elif links.get("problem"):
        lines += [f"_No preview: {links['problem']}_", ""]
    lines += [
        f"**Deadline:** {item.deadline or 'none given'}  ",
        f"**Why it needs a person:** {item.reasons}  ",
        f"**Queue:** {item.queue or 'standard'}  ",
        f"**Confidence:** {item.confidence if item.confidence is not None else '-'}"
        + (f" (weakest signal: {weakest})" if (weakest := weakest_signal(item.signals)) else ""),
        "",
        f"**Brief:** {item.brief or '(no brief)'}",
        "",
        _file_line("Reference image", item.reference, links.get("reference", "")),
        _file_line(f"Source ({size})", item.source, links.get("source", "")),
        _file_line(
            "PSD with the AI mask as the starting layer mask", item.psd, links.get("layered", "")
        ),
        _file_line("AI mask", item.mask, links.get("mask", "")),
        "",
        "Choose a **decision** (required): **approve** publishes the AI mask; **replace** "
        f"publishes your retouched file (PNG with alpha, or a grayscale mask, exactly {size}); "
        "**reject** asks for a reshoot.",
    ]
    return "\n".join(lines)


def validate_decision(decision: ReviewDecision, item: ImageItem) -> str:
    """Why the answer cannot be used, or '' when it can."""
    if not decision.retoucher.strip():
        return "enter your name in Retoucher: the DAM records who approved or rejected each image."
    if decision.decision != "replace":
        return ""
    uri = decision.retouched_file.strip()
    if not uri:
        return "replace needs the retouched file's path or URI."
    try:
        check_location(uri, "retouched file")
    except ConfigError as exc:
        return str(exc)
    try:
        storage.require_regular_file(uri, "the retouched file")  # never /dev/zero or a FIFO
        data = storage.read_bytes(uri)
    except ImageInputError as exc:
        return f"{exc} Give the path of an exported PNG or TIFF."
    except (FileNotFoundError, IsADirectoryError):
        return f"the retouched file {uri} does not exist."
    except Exception as exc:  # permissions, network, bad URI scheme
        return f"the retouched file {uri} cannot be read ({type(exc).__name__}: {exc})."
    try:
        header = Image.open(io.BytesIO(data))
    except Exception:
        return f"the retouched file {uri} is not an image."
    has_alpha = header.mode in {"RGBA", "LA", "PA"} or "transparency" in header.info
    if not has_alpha and header.mode not in {"L", "1", "I;16", "I;16B", "I;16L", "I"}:
        return f"the retouched file has no alpha channel and is not a grayscale mask (mode {header.mode})."
    if item.width and header.size != (item.width, item.height):
        return (
            f"the retouched file is {header.width}x{header.height} but the source is "
            f"{item.width}x{item.height}; export it at the source size."
        )
    try:
        load_mask(data, uri)  # decode it whole: a truncated export must be caught here
    except Exception as exc:
        return f"the retouched file {uri} is damaged or incomplete ({exc}); export it again."
    return ""


def _approved_mask(decision: ReviewDecision, item: ImageItem, ctx: ShootContext) -> str:
    if decision.decision != "replace":
        return item.mask
    uri = decision.retouched_file.strip()
    mask = load_mask(storage.read_bytes(uri), uri)
    target = ctx.layout.path("masks", f"{item.image_id}.retouched", ".png")
    return storage.write_bytes(target, mask_to_png_bytes(mask, ctx.config.png_compress_level))


@task(name="land-review-decision", retries=3, retry_delay_seconds=[5, 30, 120])
def land_decision(decision: ReviewDecision, item: ImageItem, ctx: ShootContext) -> ReviewOutcome:
    """Export and register an approved or replaced cutout, or register a rejection; update the ledger."""
    settings = get_settings()  # this process's: the DAM's credentials, the rate limit
    adapter = create_adapter(ctx.config.dam_settings(settings), ctx.output_root)
    by = decision.retoucher.strip()
    if decision.decision == "reject":
        state = ApprovalState.REJECTED
        item.review_state = "rejected"
    else:
        mask_uri = _approved_mask(decision, item, ctx)
        rgb, mask = load_full(item, mask_uri, ctx.config.max_pixels)
        write_final_renditions(
            item,
            ctx.layout,
            rgb,
            mask,
            load_presets(Path(ctx.presets_file)),
            ctx.job_id,
            ctx.model,
            ctx.config.png_compress_level,
        )
        replaced = decision.decision == "replace"
        state = ApprovalState.REPLACED if replaced else ApprovalState.APPROVED
        item.review_state = "replaced" if replaced else "approved"
    note = decision.note.strip()
    if decision.decision == "reject" and not note:
        note = "Reshoot requested."
    item.reviewed_by, item.review_note = by, note
    item.review_run_id = str(flow_run.get_id() or item.review_run_id)
    ensure_limits(settings)
    dam_write_slot()
    extra = {"decision": decision.decision}
    if decision.decision == "replace":
        extra["retouched_file"] = decision.retouched_file.strip()
    register_item(adapter, item, ctx.job_id, state, by=by, note=note, extra=extra)
    record_review_outcome(ctx.layout, item)
    return ReviewOutcome(
        decision=decision.decision,
        retoucher=by,
        dam_id=item.dam_id,
        approval_state=state.value,
        renditions=[u for u in (item.png, item.psd, *item.jpg) if u],
    )


def review_run_name(item: ImageItem, job_id: str) -> str:
    """Run name a retoucher scans in the UI: deadline, SKU, job."""
    deadline = item.deadline[:10] if item.deadline else "no-deadline"
    return f"{deadline} · {item.sku} · {job_id}"


def emit_review_event(
    kind: str, item: ImageItem, ctx: ShootContext, run_id: str, **extra: str
) -> None:
    """Emit cutline.review.<kind> so automations can notify the team."""
    emit_event(
        event=f"cutline.review.{kind}",
        resource={
            "prefect.resource.id": f"cutline.review.{run_id}",
            "prefect.resource.name": review_run_name(item, ctx.job_id),
            "cutline.job-id": ctx.job_id,
            "cutline.sku": item.sku,
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{run_id}",
                "prefect.resource.role": "flow-run",
            }
        ],
        payload={
            "job_id": ctx.job_id,
            "sku": item.sku,
            "category": item.category,
            "deadline": item.deadline,
            "reasons": item.reasons,
            "queue": item.queue,
            "source": item.source_name,
            **extra,
        },
    )
