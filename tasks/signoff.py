"""Producer sign-off of a shoot: the form, its checks, and what an answer does (DAM records
signed off or sent back to review, a webhook for the studio's own tools)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Literal, NamedTuple

import httpx
from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.input import RunInput, read_flow_run_input
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from cutline.base import storage
from cutline.base.markdown import code, inert
from cutline.base.naming import person_name_problem
from cutline.base.settings import CutlineSettings, get_settings
from cutline.domain.items import ImageItem, JobLayout
from cutline.domain.manifest import is_manifest_row
from cutline.domain.run_config import RunConfig
from cutline.domain.workstate import WorkRecord
from cutline.imaging.contact_sheet import ContactSheet, job_root_of_sheet, lane_of
from cutline.records.ledger import read_ledger
from cutline.services.object_share import MAX_LINK_SECONDS, is_object_store
from cutline.services.share import register_share
from cutline.services.signoff_queue import signoff_runs
from dam_adapters import ApprovalState, AssetRecord, DamAdapter, create_adapter
from rules.engine import Lane
from tasks.context import ShootContext, run_logger
from tasks.forms import required_fields
from tasks.review_board import refresh_review_queue
from tasks.review_request import open_review, review_deployment_id

SIGNABLE = frozenset({ApprovalState.AUTO_APPROVED, ApprovalState.APPROVED, ApprovalState.REPLACED})
SIGNOFF_TAG = "signoff"


class SignOffDecision(RunInput):
    """What the producer answers in the sign-off form."""

    model_config = ConfigDict(json_schema_extra=required_fields("decision", "producer"))

    decision: Literal["approve", "send-back"] = Field(
        description="approve: every auto and approved asset on the contact sheet is signed off. "
        "send-back: the SKUs below go back to the review lane with your note; the rest of the "
        "sheet is signed off."
    )
    send_back: str = Field(
        default="", description="SKUs to send back to review, separated by commas (send-back)."
    )
    note: str = Field(default="", description="For the retoucher: what to fix in those SKUs.")
    producer: str = Field(min_length=1, description="Your name; the DAM records who signed off.")
    comment: str = Field(default="", description="A comment kept with the sign-off.")

    def skus(self) -> list[str]:
        """The SKUs to send back, as typed (trimmed, no empties, no repeats)."""
        seen: dict[str, None] = {}
        for sku in self.send_back.split(","):
            if sku.strip():
                seen[sku.strip()] = None
        return list(seen)


class SignOffOutcome(BaseModel):
    """What a sign-off did."""

    job_id: str
    decision: str
    producer: str
    comment: str
    at: str
    signed_off: list[str] = Field(description="DAM ids moved to signed-off.")
    sent_back: list[str] = Field(description="SKUs sent back to review.")
    review_runs: list[str] = Field(description="Review runs reopened for them.")
    left_out: list[str] = Field(
        default_factory=list,
        description="Assets not signed off because the form and sheet did not show them as "
        "they are now (decided or changed after the sheet was made), each with why; the next "
        "sign-off covers them.",
    )
    contact_sheet: str
    contact_sheet_link: str = Field(default="", description="The client's read-only link.")
    webhook: str = Field(default="", description="'sent', 'failed: ...' or '' (none configured).")


class ShownAsset(BaseModel):
    """A signable asset as a sign-off's form and contact sheet showed it. The sign-off covers
    exactly these, and each only while its record is still the revision shown."""

    dam_id: str
    sku: str
    source_name: str = ""
    approval_state: ApprovalState
    revision: int


def shown_assets(records: list[AssetRecord]) -> list[ShownAsset]:
    """The signable assets among ``records`` (the ones a sheet was made from)."""
    return [
        ShownAsset(
            dam_id=r.dam_id,
            sku=r.sku,
            source_name=r.source_name,
            approval_state=r.approval_state,
            revision=r.revision,
        )
        for r in records
        if r.approval_state in SIGNABLE
    ]


def counts_by_lane(records: list[AssetRecord]) -> dict[str, int]:
    """Assets per lane and approval state, e.g. {'auto': 3, 'review: approved': 1}."""
    counts: dict[str, int] = {}
    for record in records:
        if record.approval_state == ApprovalState.WITHDRAWN:  # gone from the shoot: not signed
            key = "withdrawn (no longer in the shoot)"
        else:
            key = "auto" if lane_of(record) == "auto" else f"review: {record.approval_state.value}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def ledger_accounting(rows: list[dict[str, str]]) -> dict[str, int]:
    """Every ledger row (each input file and each manifest row) in exactly one bucket."""
    buckets = {
        "auto": 0,
        "review: decided": 0,
        "review: waiting for a retoucher": 0,
        "failed files": 0,
        "manifest rows without a file": 0,
    }
    for row in rows:
        if is_manifest_row(row["source"]):
            buckets["manifest rows without a file"] += 1
        elif row["lane"] == "failed":
            buckets["failed files"] += 1
        elif row["lane"] == "auto":
            buckets["auto"] += 1
        elif row.get("review_state") in {"approved", "replaced", "rejected"}:
            buckets["review: decided"] += 1
        else:
            buckets["review: waiting for a retoucher"] += 1
    return buckets


def _sum_line(total: str, parts: dict[str, int]) -> str:
    """'**total** = a 3 + b 1': one line (the UI's form text is short) that adds up."""
    return f"**{total}** = " + " + ".join(f"{name} {n}" for name, n in parts.items())


def signoff_description(
    job_id: str,
    records: list[AssetRecord],
    sheet: ContactSheet,
    link_text: str,
    problem: str = "",
    ledger_rows: list[dict[str, str]] | None = None,
) -> str:
    """The form's text: what is being signed off, the contact sheet, and counts that add up
    (the DAM's assets by state; the ledger's every input file and manifest row)."""
    lines = []
    by_state = counts_by_lane(records)
    unpictured = len(records) - sheet.assets
    lines += [
        f"## Sign off shoot {job_id}",
        "",
        f"**Contact sheet**: {sheet.assets} of the {len(records)} DAM assets on "
        f"{len(sheet.png_pages)} page(s)"
        + (f" ({unpictured} without a picture: rejected or withdrawn)" if unpictured else "")
        + (f"; {link_text}" if link_text else "")
        + ".",
        "",
        _sum_line(f"In the DAM: {len(records)} assets", by_state),
        "",
        _to_sign_line(records),
    ]
    if ledger_rows is not None:
        lines += [
            "",
            _sum_line(
                f"In the ledger: {len(ledger_rows)} rows (every input file and manifest row)",
                ledger_accounting(ledger_rows),
            ),
        ]
    lines += [
        "",
        "Choose a **decision** (required) and enter your name: **approve** signs off every auto "
        "and approved asset on this sheet; **send-back** returns the SKUs you list to the "
        "review lane with your note (the rest of the sheet is signed off). Assets decided or "
        "changed after this sheet was made are not signed by this form: the next sign-off "
        "shows them.",
        "",
        f"The sheet on disk: {code(sheet.index)}",
    ]
    return with_problem("\n".join(lines), problem)


def _to_sign_line(records: list[AssetRecord]) -> str:
    """What this form signs: the assets no producer has signed off yet (new, changed or
    decided since the last sign-off), and those signed off already, which stay so."""
    signable = [r for r in records if r.approval_state in SIGNABLE]
    skus = sorted({r.sku for r in signable})
    signed = sum(r.approval_state == ApprovalState.SIGNED_OFF for r in records)
    shown = ", ".join(skus[:12]) + (f" and {len(skus) - 12} more" if len(skus) > 12 else "")
    text = f"**To sign off now**: {len(signable)} asset(s) not signed off yet"
    text += f" (SKU {inert(shown)})" if signable else ""
    if signed:
        text += f"; {signed} signed off earlier stay signed off (not asked again)"
    return text + "."


def with_problem(text: str, problem: str) -> str:
    """The form's ``text`` asked again after a refused answer: why, above it."""
    if not problem:
        return text
    return f"**That answer could not be used:** {inert(problem)}\n\n{text}"


def validate_signoff(
    decision: SignOffDecision, records: list[AssetRecord] | list[ShownAsset]
) -> str:
    """Why the answer cannot be used, or '' when it can (``records``: what the form showed)."""
    if not decision.producer.strip():
        return "enter your name in Producer: the DAM records who signed the shoot off."
    if problem := person_name_problem(decision.producer, "Producer"):
        return problem
    if decision.decision == "approve":
        return (
            "" if not decision.skus() else "approve takes no SKUs; choose send-back to return some."
        )
    skus = decision.skus()
    if not skus:
        return "send-back needs at least one SKU."
    known = {r.sku for r in records if r.approval_state in SIGNABLE}
    unknown = [s for s in skus if s not in known]
    if unknown:
        return (
            f"unknown or not signable SKU(s): {', '.join(unknown)}. A SKU signed off earlier "
            "goes back to review with the reopen-assets deployment (Custom run) or "
            "`cutline signoff reopen`."
        )
    return ""


def _reopened_item(
    layout: JobLayout, record: AssetRecord, producer: str, note: str, why: str
) -> ImageItem:
    """The image as the shoot left it, back in the review lane with the producer's note."""
    rows = [
        r
        for r in read_ledger(layout.ledger)
        if r["source"] == record.source and r["sha256"] == record.content_hash
    ]
    if not rows:
        raise LookupError(f"{record.sku} ({record.source_name}) is not in {layout.ledger}")
    state = storage.join(layout.root, "state", f"{rows[0]['image_id']}.json")
    item = WorkRecord.model_validate_json(storage.read_bytes(state)).item
    item.lane = Lane.REVIEW
    item.queue = "standard"
    item.reasons = f"{why} {producer}: {note or 'no note'}"
    item.rules = ["signoff:sent-back"]
    item.review_state = "queued"
    item.review_note = note
    return item


def send_back(
    adapter: DamAdapter,
    ctx: ShootContext,
    record: AssetRecord,
    producer: str,
    note: str,
    key: str,
    why: str = "Sent back by producer",
) -> str:
    """Put one asset back in the review lane: a review run for its image as the shoot left
    it, with the producer's note as its reason (``key`` makes the run once per request,
    whatever retries), and the DAM record moved to sent-back (its lane's decision and any
    sign-off stay in its history). The review run's id."""
    item = _reopened_item(ctx.layout, record, producer, note, why)
    with get_client(sync_client=True) as client:
        run = open_review(client, review_deployment_id(client, ctx), item, ctx, key)
    if record.approval_state != ApprovalState.SENT_BACK:
        adapter.update_approval(record.dam_id, ApprovalState.SENT_BACK, by=producer, note=note)
    return str(run.id)


def shoot_context(layout: JobLayout, job_id: str, settings: CutlineSettings) -> ShootContext:
    """The context of the shoot's last run, with the settings that run froze (a job written
    before run configs were kept gets this process's settings)."""
    summary = json.loads(storage.read_bytes(layout.summary))
    if storage.exists(layout.run_config):
        config = RunConfig.model_validate_json(storage.read_bytes(layout.run_config))
    else:
        config = RunConfig.freeze(settings)
    return ShootContext(job_id=job_id, shoot=summary["shoot"], job_root=layout.root, config=config)


def job_dam_settings(layout: JobLayout, settings: CutlineSettings) -> CutlineSettings:
    """This process's settings with the DAM the job's last run registered into (from its
    run config), so a sign-off reads and updates the records that run wrote, whatever the
    serving process's own environment says."""
    if not storage.exists(layout.run_config):
        return settings
    config = RunConfig.model_validate_json(storage.read_bytes(layout.run_config))
    return config.dam_settings(settings)


def client_link(settings: CutlineSettings, job_id: str, sheet_index: str) -> dict[str, str]:
    """The client's read-only link to the contact sheet whose index is ``sheet_index``, for
    the sign-off form: {'url', 'text'}. A sheet on a local disk is served by the stack's
    share server; one in a bucket is linked by presigned URLs on the studio's S3 endpoint
    (at most seven days). A link that cannot be made costs the link, never the sign-off:
    the text then says why and how to issue one; {} when the sheet cannot be shared."""
    folder = storage.parent(sheet_index)
    out = storage.parent(job_root_of_sheet(folder))
    again = f"cutline signoff link {job_id}" + (f" --out {out}" if is_object_store(out) else "")
    try:
        link = register_share(settings, job_id, folder)
    except Exception as exc:  # the store refused, or is unreachable right now
        run_logger().warning("No client link for the contact sheet of %s: %s", job_id, exc)
        why = inert(f"{type(exc).__name__}: {exc}"[:300])
        return {"text": f"no client link ({why}); issue one with {code(again)}"}
    if not link:
        return {}
    text = f"[open it (client link)]({link.url}), valid until {link.expires_at:%Y-%m-%d %H:%M} UTC"
    if is_object_store(folder) and settings.share_link_days * 86400 > MAX_LINK_SECONDS:
        text += f" (object-storage links last at most 7 days; {code(again)} issues a new one)"
    return {"url": link.url, "text": text}


def call_webhook(url: str, payload: dict, retries: int) -> str:
    """POST the payload, retrying with backoff; 'sent' or why it failed."""
    problem = ""
    for attempt in range(retries + 1):
        try:
            response = httpx.post(url, json=payload, timeout=10)
            if response.status_code < 300:
                return "sent"
            problem = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if attempt < retries:
            time.sleep(min(30.0, 2.0**attempt))
    return f"failed: {problem}"


@task(name="land-signoff", retries=2, retry_delay_seconds=[5, 30])
def land_signoff(
    decision: SignOffDecision,
    job_id: str,
    output_root: str,
    sheet: ContactSheet,
    link: str = "",
    shown: list[ShownAsset] | None = None,
) -> SignOffOutcome:
    """Sign off the signable assets the form and sheet showed (``shown``), each only while its
    DAM record is still the revision shown, except those sent back; reopen a review run per
    sent-back image; call the webhook. Assets decided or changed after the sheet was made
    are left out, saying why: the next sign-off shows them."""
    logger = get_run_logger()
    settings = get_settings()
    layout = JobLayout.for_job(output_root, job_id)
    adapter = create_adapter(job_dam_settings(layout, settings), output_root)
    producer = decision.producer.strip()
    back = set(decision.skus()) if decision.decision == "send-back" else set()
    signed, reopened, left_out = [], [], []
    ctx = shoot_context(layout, job_id, settings) if back else None
    by_id = {asset.dam_id: asset for asset in shown or []}
    for record in adapter.list_job(job_id):
        name = f"{record.sku} ({record.source_name})"
        seen = by_id.get(record.dam_id)
        if seen is None:
            if record.approval_state in SIGNABLE:
                left_out.append(
                    f"{name}: {record.approval_state.value} after the contact sheet was made"
                )
            continue
        # This sign-off's own change, landed by an earlier try of this task.
        ours = record.revision == seen.revision + 1 and record.decided_by == producer
        if record.sku in back:
            if record.approval_state in SIGNABLE or (
                ours and record.approval_state == ApprovalState.SENT_BACK
            ):
                key = f"sendback:{job_id}:{record.content_hash}:{flow_run.get_id()}"
                reopened.append(
                    send_back(adapter, ctx, record, producer, decision.note.strip(), key)
                )
            else:
                left_out.append(f"{name}: now {record.approval_state.value}, not sent back")
            continue
        if record.approval_state == ApprovalState.SIGNED_OFF:
            if ours:
                signed.append(record.dam_id)
            continue  # else signed off meanwhile, by the sign-off of an earlier sheet
        if record.revision != seen.revision or record.approval_state != seen.approval_state:
            left_out.append(
                f"{name}: changed since the contact sheet was made (revision {seen.revision}, "
                f"{seen.approval_state.value} then; revision {record.revision}, "
                f"{record.approval_state.value} now)"
            )
            continue
        adapter.update_approval(
            record.dam_id, ApprovalState.SIGNED_OFF, by=producer, note=decision.comment.strip()
        )
        signed.append(record.dam_id)
    if reopened and (why := refresh_review_queue(job_id)):
        logger.warning("%s", why)
    outcome = SignOffOutcome(
        job_id=job_id,
        decision=decision.decision,
        producer=producer,
        comment=decision.comment.strip(),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        signed_off=signed,
        sent_back=sorted(back),
        review_runs=reopened,
        left_out=left_out,
        contact_sheet=sheet.index,
        contact_sheet_link=link,
    )
    if settings.signoff_webhook_url:
        payload = {
            "event": "cutline.shoot.signed-off",
            **outcome.model_dump(exclude={"webhook", "review_runs"}),
            "signed_off": len(signed),
        }
        outcome.webhook = call_webhook(
            settings.signoff_webhook_url, payload, settings.signoff_webhook_retries
        )
        if outcome.webhook != "sent":
            logger.error("Sign-off webhook for %s %s", job_id, outcome.webhook)
    logger.info(
        "Shoot %s signed off by %s: %d assets signed off, %d SKU(s) sent back, %d left out",
        job_id,
        producer,
        len(signed),
        len(back),
        len(left_out),
    )
    for line in left_out:
        logger.warning("Not signed off (not as the sheet showed it): %s", line)
    return outcome


def signoff_message(outcome: SignOffOutcome, next_signoff: str = "") -> str:
    """The finished sign-off run's state message (shown in the UI and by `cutline signoff
    resume`): what was signed, and what was left out and why."""
    from cutline.base.markdown import visible_text

    text = (
        f"Decided: {outcome.decision} by {outcome.producer} (the first answer; any answer given "
        f"after it was not used). Signed off {len(outcome.signed_off)} asset(s) as the contact "
        "sheet showed them"
        + (f"; sent back {', '.join(outcome.sent_back)}" if outcome.sent_back else "")
        + "."
    )
    if outcome.left_out:
        shown = "; ".join(outcome.left_out[:20])
        more = f"; and {len(outcome.left_out) - 20} more" if len(outcome.left_out) > 20 else ""
        text += (
            f" Left out {len(outcome.left_out)} asset(s) the sheet did not show as they are now, "
            f"not signed off: {shown}{more}. " + (next_signoff or "The next sign-off shows them.")
        )
    return visible_text(text)[:4000]


class SignOffAsk(NamedTuple):
    """What asking for a sign-off did: the run that waits for the producer (None when none
    was needed), and why no new one was started ('' when one was)."""

    run_id: str | None
    why_not_new: str = ""


def signable_now(job_id: str, output_root: str) -> list[AssetRecord]:
    """The job's assets a sign-off would cover now: auto, approved and replaced ones that no
    producer has signed off yet (signed-off, rejected, sent-back and withdrawn ones are not)."""
    layout = JobLayout.for_job(output_root, job_id)
    adapter = create_adapter(job_dam_settings(layout, get_settings()), output_root)
    return [r for r in adapter.list_job(job_id) if r.approval_state in SIGNABLE]


def _waiting_showing(job_id: str, signable: list[AssetRecord]) -> str | None:
    """A sign-off of ``job_id`` still waiting unanswered whose form covers exactly
    ``signable`` at their current revisions: asking again would show the producer the same
    form (an unchanged rerun, a Retry, a nightly schedule)."""
    from cutline.services.review_queue import answers_given

    wanted = sorted((r.dam_id, r.revision) for r in signable)
    with get_client(sync_client=True) as client:
        for run in signoff_runs(job_id, ["PAUSED"]):
            shown = read_flow_run_input("sheet-shown", flow_run_id=run.id)
            if not isinstance(shown, dict) or answers_given(client, str(run.id)):
                continue
            covers = sorted((a["dam_id"], a["revision"]) for a in shown.get("assets", []))
            if covers == wanted:
                return str(run.id)
    return None


def request_signoff(job_id: str, output_root: str, reason: str, keep: str = "") -> SignOffAsk:
    """Ask the producer to sign off what is new: start the shoot's sign-off run, then cancel
    any older one still waiting or being prepared (a producer never has two forms, nor
    none), except ``keep`` (a sign-off asking for the next one) and any landing an answer
    already given. No run is started when nothing is left to sign off (every asset signed
    off already: a rerun of an unchanged, signed-off shoot) or when a waiting form already
    covers exactly what is signable now; nor when sign-off requests are switched off."""
    settings = get_settings()
    if not settings.signoff_deployment:
        return SignOffAsk(None, "sign-off requests are switched off (CUTLINE_SIGNOFF_DEPLOYMENT)")
    signable = signable_now(job_id, output_root)
    if not signable:
        return SignOffAsk(
            None,
            "nothing new to sign off: every asset in the DAM is signed off, rejected or "
            "waiting for a retoucher (the last review decided asks for the next sign-off)",
        )
    waiting = _waiting_showing(job_id, signable)
    if waiting is not None and waiting != keep:
        return SignOffAsk(waiting, "the sign-off already waiting covers the same assets")
    run = run_deployment(
        settings.signoff_deployment,
        parameters={"job_id": job_id, "output_root": output_root},
        flow_run_name=f"sign-off · {job_id}",
        tags=["cutline", SIGNOFF_TAG, f"job:{job_id}"],
        idempotency_key=f"signoff:{job_id}:{reason}",
        timeout=0,
        as_subflow=False,
    )
    _cancel_older_signoffs(job_id, str(run.id), keep={str(run.id), keep})
    return SignOffAsk(str(run.id))


def _cancel_older_signoffs(job_id: str, newest: str, keep: set[str]) -> None:
    """A newer contact sheet replaces an older one still waiting for the producer; one the
    producer has answered is landing that answer (on the assets its sheet showed) and is
    left to finish."""
    from prefect.states import Cancelled

    from cutline.services.review_queue import answers_given

    waiting = signoff_runs(job_id, ["PAUSED", "SCHEDULED", "PENDING", "RUNNING"])
    with get_client(sync_client=True) as client:
        for run in waiting:
            if str(run.id) in keep:
                continue
            if run.state and not run.state.is_paused() and answers_given(client, str(run.id)):
                continue
            client.set_flow_run_state(
                run.id, Cancelled(message=f"superseded by sign-off run {newest}"), force=True
            )
