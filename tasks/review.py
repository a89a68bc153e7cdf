"""The review lane: ask a retoucher, check the answer, and land the decision."""

from __future__ import annotations

import io
import json
from typing import Literal

from PIL import Image
from prefect import task
from prefect.events import emit_event
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL
from pydantic import BaseModel, ConfigDict, Field

from cutline.base import storage
from cutline.base.errors import ConfigError, ImageInputError
from cutline.base.markdown import code, inert
from cutline.base.naming import person_name_problem
from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.domain.locations import check_location
from cutline.imaging.codec import load_mask, mask_to_png_bytes
from cutline.imaging.confidence import weakest_signal
from cutline.records.ledger import record_review_outcome
from cutline.services.limits import dam_write_slot, ensure_limits
from cutline.services.review_page import publish_review_page
from dam_adapters import ApprovalState, create_adapter
from tasks.context import ShootContext, run_logger
from tasks.export import load_full, write_final_renditions
from tasks.forms import required_fields
from tasks.register import register_item


class ReviewDecision(RunInput):
    """The retoucher's answer, as the Resume form in the Prefect UI asks for it."""

    # Asked again after a refused answer, the form starts from that answer: the fields get
    # defaults then, and the UI would call them "(Optional)" though an answer needs them.
    model_config = ConfigDict(json_schema_extra=required_fields("decision", "retoucher"))

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
        default="",
        description="For a reject (required): what the reshoot must fix. Otherwise optional.",
    )


class ReviewOutcome(BaseModel):
    """What a finished review did."""

    decision: str
    retoucher: str
    dam_id: str
    approval_state: str
    renditions: list[str]


def landed_message(outcome: ReviewOutcome) -> str:
    """The finished review run's state message (the UI shows it on the run): what was decided,
    by whom, and that answers given after it were not used."""
    from cutline.base.markdown import visible_text

    return visible_text(
        f"Decided: {outcome.decision} by {outcome.retoucher} (the first answer; any answer "
        f"given after it was not used). DAM asset {outcome.dam_id}: {outcome.approval_state}."
    )[:500]


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
    return f"- {label}: {opened}{code(uri)}"


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
            f"> **Your last answer could not be used:** {inert(problem)}",
            "> Your answer is kept below: correct it and submit again.",
            "",
        ]
    lines += [
        f"### Review {inert(item.sku)} · {inert(item.category or 'no category')} · "
        f"job {ctx.job_id}",  # a validated job ID: letters, digits, '.', '_', '-'
        "",
    ]
    if links.get("preview"):
        lines += [
            f"![source, cutout on a checkerboard, AI mask, edge detail]({links['preview']})",
            "",
            f"[Open these pictures at full size]({links['preview']}) · "  # the form is narrow
            f"**[Open the review page]({links['page']})** (pictures, source, AI mask, reference, "
            f"layered PSD; the link works until {links.get('expires', '-')})",
            "",
        ]
    elif links.get("problem"):
        lines += [f"_No preview: {inert(links['problem'])}_", ""]
    lines += [
        f"**Deadline:** {inert(item.deadline or 'none given')}  ",
        f"**Why it needs a person:** {inert(item.reasons)}  ",
        f"**Queue:** {inert(item.queue or 'standard')}  ",
        f"**Confidence:** {item.confidence if item.confidence is not None else '-'}"
        + (
            f" (weakest signal: {inert(weakest)})"
            if (weakest := weakest_signal(item.signals))
            else ""
        ),
        "",
        f"**Brief:** {inert(item.brief or '(no brief)')}",
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


def validate_decision(
    decision: ReviewDecision, item: ImageItem, snapshot: str = "", png_level: int = 6
) -> str:
    """Why the answer cannot be used, or '' when it can.

    A replace's retouched file is read once: the mask checked here is kept at ``snapshot``
    (in the job folder, see `retouched_snapshot`) and the landing publishes that, whatever
    happens to the retoucher's file afterwards (a landing retry never reads it again)."""
    if not decision.retoucher.strip():
        return "enter your name in Retoucher: the DAM records who approved or rejected each image."
    if problem := person_name_problem(decision.retoucher, "Retoucher"):
        return problem
    if decision.decision == "reject" and not decision.note.strip():
        return (
            "a reject needs a note saying what the reshoot must fix (lighting, focus, a "
            "smudge...): the photographer only sees the note."
        )
    if decision.decision != "replace":
        return ""
    uri = decision.retouched_file.strip()
    if not uri:
        return "replace needs the retouched file's path or URI."
    data, problem = _read_retouched(uri)
    if problem:
        return problem
    mask, problem = _retouched_mask(data, uri, item)
    if problem:
        return problem
    if snapshot:
        keep_retouched(snapshot, mask, uri, data, png_level)
    return ""


def _read_retouched(uri: str) -> tuple[bytes, str]:
    """The retouched file's bytes, or why it cannot be read (a place outside the studio's
    roots, a device or FIFO, a missing file)."""
    try:
        check_location(uri, "retouched file")
    except ConfigError as exc:
        return b"", str(exc)
    try:
        storage.require_regular_file(uri, "the retouched file")  # never /dev/zero or a FIFO
        return storage.read_bytes(uri), ""
    except ImageInputError as exc:
        return b"", f"{exc} Give the path of an exported PNG or TIFF."
    except (FileNotFoundError, IsADirectoryError):
        return b"", f"the retouched file {uri} does not exist."
    except Exception as exc:  # permissions, network, bad URI scheme
        return b"", f"the retouched file {uri} cannot be read ({type(exc).__name__}: {exc})."


def _retouched_mask(data: bytes, uri: str, item: ImageItem) -> tuple[Image.Image | None, str]:
    """The mask a retouched file publishes, or why it must not be published (not an image,
    no alpha and not grayscale, another size, damaged, empty or flat, a PSD whose composite
    is not its layers)."""
    try:
        header = Image.open(io.BytesIO(data))
    except Exception:
        return None, f"the retouched file {uri} is not an image."
    has_alpha = header.mode in {"RGBA", "LA", "PA"} or "transparency" in header.info
    if not has_alpha and header.mode not in {"L", "1", "I;16", "I;16B", "I;16L", "I"}:
        return None, (
            "the retouched file has no alpha channel and is not a grayscale mask "
            f"(mode {header.mode})."
        )
    if item.width and header.size != (item.width, item.height):
        return None, (
            f"the retouched file is {header.width}x{header.height} but the source is "
            f"{item.width}x{item.height}; export it at the source size."
        )
    try:
        mask = load_mask(data, uri)  # decode it whole: a truncated export must be caught here
    except Exception as exc:
        return None, f"the retouched file {uri} is damaged or incomplete ({exc}); export it again."
    return mask, mask_problem(mask, data, uri, has_alpha)


# A cutout hides some of the photo and keeps some: a retouched mask with fewer than this share
# of its pixels opaque (or transparent) is an empty or flat export, never a cutout.
MIN_MASK_SHARE = 0.001
# A layered PSD's saved composite may differ from what its layers make by anti-aliasing; more
# than this share of pixels off by more than PSD_MISMATCH_LEVEL (of 255) is another picture.
PSD_MISMATCH_SHARE = 0.005
PSD_MISMATCH_LEVEL = 32


def mask_problem(mask: Image.Image, data: bytes, uri: str, has_alpha: bool) -> str:
    """Why a decoded retouched mask must not be published, or '': nothing or everything
    opaque, or a PSD whose saved composite (what would be published) is not its layers."""
    import numpy as np

    arr = np.asarray(mask)
    opaque = float((arr >= 128).mean()) if arr.size else 0.0
    if opaque < MIN_MASK_SHARE:
        return (
            f"the retouched file {uri} is {'fully' if opaque == 0 else 'almost fully'} "
            f"transparent ({opaque:.2%} of its pixels opaque): nothing would be published. "
            "Export the cutout with the product opaque, or choose reject."
        )
    if opaque > 1 - MIN_MASK_SHARE:
        return (
            f"the retouched file {uri} is {'fully' if opaque == 1 else 'almost fully'} opaque "
            f"({1 - opaque:.2%} of its pixels transparent): it would publish the whole "
            "background. Export it with the background transparent (an alpha channel), or "
            "choose approve or reject."
        )
    if data[:4] == b"8BPS":
        return psd_layers_problem(data, arr, uri, has_alpha)
    return ""


def psd_layers_problem(data: bytes, shown, uri: str, has_alpha: bool) -> str:
    """Why a layered PSD's saved composite cannot stand for it, or '': the composite is what
    would be published, so it must be what its visible layers make. ``shown`` is the mask
    read from the composite (its alpha, or its gray levels when it has none)."""
    import numpy as np
    from psd_tools import PSDImage

    try:
        psd = PSDImage.open(io.BytesIO(data))
        if not len(psd):  # a flat document: its composite is all there is
            return ""
        layered = psd.composite(ignore_preview=True)
    except Exception as exc:
        return (
            f"the layers of the PSD {uri} cannot be read ({type(exc).__name__}: {exc}), so its "
            "saved composite cannot be checked against them; export a PNG with alpha instead."
        )
    if layered is None:
        made = np.zeros_like(shown)  # no visible layer: nothing
    elif has_alpha:
        made = np.asarray(layered.convert("RGBA").getchannel("A"))
    else:
        white = Image.new("RGBA", layered.size, (255, 255, 255, 255))
        made = np.asarray(Image.alpha_composite(white, layered.convert("RGBA")).convert("L"))
    if made.shape != shown.shape:
        off = 1.0
    else:
        off = float((np.abs(made.astype(np.int16) - shown) > PSD_MISMATCH_LEVEL).mean())
    if off > PSD_MISMATCH_SHARE:
        return (
            f"the PSD {uri} would publish another picture than its layers show: {off:.1%} of "
            "the pixels of its saved composite differ from what its visible layers make (it "
            "was saved without 'Maximize compatibility', or changed by a tool that left the "
            "old composite). Re-save it in Photoshop with Maximize PSD compatibility on, or "
            "export a PNG with alpha."
        )
    return ""


def retouched_snapshot(item: ImageItem, ctx: ShootContext, tag: str) -> str:
    """Where an answer's retouched mask is kept once checked (``tag``: the review run and
    the attempt), with a ``.json`` beside it naming the file it came from and its SHA-256."""
    return ctx.layout.path("masks", f"{item.image_id}.retouched-{tag}", ".png")


def keep_retouched(snapshot: str, mask: Image.Image, uri: str, data: bytes, png_level: int) -> None:
    """Keep the checked mask in the job folder: the PNG, then the record that makes it whole."""
    import hashlib
    import json

    storage.write_bytes(snapshot, mask_to_png_bytes(mask, png_level))
    record = {"retouched_file": uri, "sha256": hashlib.sha256(data).hexdigest()}
    storage.write_bytes(snapshot + ".json", json.dumps(record).encode())


def _approved_mask(
    decision: ReviewDecision, item: ImageItem, ctx: ShootContext, snapshot: str
) -> tuple[str, dict[str, str]]:
    """The mask to publish and, for a replace, its provenance for the DAM: the snapshot the
    answer was checked with, never the retoucher's file read again."""
    if decision.decision != "replace":
        return item.mask, {}
    snapshot = snapshot or retouched_snapshot(item, ctx, f"{flow_run.get_id() or 'run'}"[:8])
    if not storage.exists(snapshot + ".json"):
        # Checked before snapshots were kept, or the job folder lost it: check it again now,
        # and keep what was checked.
        problem = validate_decision(decision, item, snapshot, ctx.config.png_compress_level)
        if problem:
            raise ImageInputError(
                item.source_name,
                f"the retouched file cannot be published: {problem}",
                hint="Send the image back to review (sign-off send-back) for a new answer.",
            )
    kept = json.loads(storage.read_bytes(snapshot + ".json"))
    return snapshot, {"retouched_file": kept["retouched_file"], "retouched_sha256": kept["sha256"]}


@task(name="land-review-decision", retries=3, retry_delay_seconds=[5, 30, 120])
def land_decision(
    decision: ReviewDecision, item: ImageItem, ctx: ShootContext, snapshot: str = ""
) -> ReviewOutcome:
    """Export and register an approved or replaced cutout, or register a rejection; update the
    ledger. A replace publishes the mask its check kept at ``snapshot``."""
    settings = get_settings()  # this process's: the DAM's credentials, the rate limit
    adapter = create_adapter(ctx.config.dam_settings(settings), ctx.output_root)
    by = decision.retoucher.strip()
    if decision.decision == "reject":
        state = ApprovalState.REJECTED
        item.review_state = "rejected"
    else:
        mask_uri, provenance = _approved_mask(decision, item, ctx, snapshot)
        rgb, mask = load_full(item, mask_uri, ctx.config.max_pixels)
        write_final_renditions(
            item,
            ctx.layout,
            rgb,
            mask,
            ctx.presets,
            ctx.job_id,
            item.model or ctx.model,
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
        extra.update(provenance)  # the file checked, and the SHA-256 of what was published
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
