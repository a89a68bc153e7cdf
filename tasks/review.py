"""The review lane: ask a retoucher, check the answer, and land the decision."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

from PIL import Image
from prefect import task
from prefect.deployments import run_deployment
from prefect.events import emit_event
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from cutline.base import storage
from cutline.base.errors import ConfigError, ImageInputError
from cutline.base.naming import short_hash
from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.domain.limits import dam_write_slot, ensure_limits
from cutline.domain.locations import check_location
from cutline.domain.manifest import KNOWN_COLUMNS
from cutline.imaging.codec import load_mask, mask_to_png_bytes
from cutline.imaging.confidence import weakest_signal
from cutline.records.ledger import record_review_outcome
from dam_adapters import ApprovalState, create_adapter
from rules.engine import Lane
from rules.presets import load_presets
from tasks.context import ImageWork, ShootContext
from tasks.export import load_full, write_final_renditions
from tasks.register import register_item

REVIEW_TAG = "cutline-review"


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


REVIEW_LANES = frozenset({Lane.REVIEW})


def make_review_request(ctx: ShootContext) -> ImageWork:
    """Per-image: start the review-cutout run of a review-lane image (idempotent per job,
    content and file)."""

    def request(item: ImageItem) -> None:
        # One review per input file and content; a previous run that ended without a
        # decision (failed, crashed, cancelled) is replaced by a fresh one, and so is one
        # still waiting whose form shows details the shoot no longer has (a rerun with a
        # corrected manifest). A decided review is kept: reruns keep decisions.
        review_key = f"review:{ctx.job_id}:{item.sha256}:{short_hash(item.source_name)}"
        for _ in range(50):
            run = start_review(item, ctx, ctx.config.review_deployment, review_key)
            state = run.state
            ended_undecided = state and state.is_final() and not state.is_completed()
            changed = changed_details(run.parameters.get("item") or {}, item)
            if not ended_undecided and not (changed and replace_waiting_review(run, changed)):
                break
            review_key = f"{review_key}:after-{str(run.id)[:8]}"
        item.review_run_id = str(run.id)
        item.review_state = item.review_state or "queued"

    return request


# What a retoucher reads in the form and the queue orders by (every manifest detail of the
# image, and how the rules routed it): a waiting review showing other values than the shoot's
# current ledger is replaced.
FORM_DETAILS = (
    *(column for column in KNOWN_COLUMNS if column != "filename"),
    "queue",
    "reasons",
    "rules",
)


def changed_details(shown: dict, item: ImageItem) -> list[str]:
    """The form details (see FORM_DETAILS) a waiting review shows differently from ``item``."""
    current = item.model_dump(mode="json", include=set(FORM_DETAILS))
    return [name for name in FORM_DETAILS if shown.get(name) != current.get(name)]


def replace_waiting_review(run, changed: list[str]) -> bool:
    """Cancel a review run that waits with out-of-date details so a fresh one is started;
    False (keep it) when it is not waiting: a decision may be landing right now."""
    from cutline.services.review_queue import cancel_run

    if not (run.state and (run.state.is_paused() or run.state.is_scheduled())):
        return False
    cancel_run(
        str(run.id),
        f"Superseded: the shoot's rerun changed {', '.join(changed)}; a new review shows them.",
    )
    return True


def start_review(item: ImageItem, ctx: ShootContext, deployment: str, review_key: str):
    """Create (or find, by idempotency key) the review run of one image."""
    return run_deployment(
        deployment,
        parameters={"item": item.model_dump(mode="json"), "ctx": ctx.model_dump(mode="json")},
        flow_run_name=review_run_name(item, ctx.job_id),
        tags=[REVIEW_TAG, f"job:{ctx.job_id}", f"queue:{item.queue or 'standard'}"],
        idempotency_key=review_key,
        timeout=0,
        as_subflow=False,
    )
