"""DAM registration: auto-lane assets land in the DAM, idempotently."""

from __future__ import annotations

from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.domain.limits import DamWriteAllowance, dam_write_slot
from cutline.domain.workstate import WorkState, file_fingerprint, stage_key
from dam_adapters import (
    ApprovalState,
    AssetRecord,
    AssetSubmission,
    DamAdapter,
    create_adapter,
    idempotency_key,
)
from rules.engine import Lane
from tasks.context import ImageWork, ShootContext
from tasks.export import export_key


def submission_for(
    item: ImageItem,
    job_id: str,
    state: ApprovalState,
    *,
    by: str,
    note: str = "",
    extra: dict[str, str] | None = None,
) -> AssetSubmission:
    """The DAM submission for an exported image (``extra``: more metadata, e.g. the
    retouched file a replacement came from)."""
    renditions = {"png": item.png, "psd": item.psd, "mask": item.mask}
    renditions.update({f"jpg:{ch}": uri for ch, uri in zip(item.channels, item.jpg, strict=False)})
    return AssetSubmission(
        job_id=job_id,
        sku=item.sku,
        category=item.category,
        campaign=item.campaign,
        channels=item.channels,
        source=item.source,
        source_name=item.source_name,
        content_hash=item.sha256,
        approval_state=state,
        decided_by=by,
        note=note,
        confidence=item.confidence,
        reasons=item.reasons,
        renditions={k: v for k, v in renditions.items() if v},
        metadata={
            "deadline": item.deadline,
            "brief": item.brief,
            "rules": ";".join(item.rules),
            **(extra or {}),
        },
    )


def register_item(
    adapter: DamAdapter,
    item: ImageItem,
    job_id: str,
    state: ApprovalState,
    *,
    by: str,
    note: str = "",
    extra: dict[str, str] | None = None,
) -> None:
    """Register one image and remember its DAM id on the item."""
    record = adapter.register(submission_for(item, job_id, state, by=by, note=note, extra=extra))
    item.dam_id = record.dam_id


REGISTER_LANES = frozenset({Lane.AUTO})


def withdraw_stale_assets(
    adapter: DamAdapter, job_id: str, current: dict[str, set[tuple[str, str]]]
) -> list[AssetRecord]:
    """Make the DAM match the shoot after a rerun: every asset of the job whose source file
    is no longer in the shoot, whose content was replaced by a new version under the same
    name, or whose file now belongs to another SKU, is withdrawn (a state of its own, with the
    reason, kept in its history) instead of staying approved next to the new one.

    ``current`` maps each input's name in the shoot to the (content hash, SKU) pairs seen this
    run (an empty hash when the file could not be read, which withdraws nothing of that name).
    """
    withdrawn = []
    for record in adapter.list_job(job_id):
        if record.approval_state == ApprovalState.WITHDRAWN:
            continue
        versions = current.get(record.source_name)
        hashes = {sha for sha, _ in versions or ()}
        key = idempotency_key(job_id, record.sku, record.source_name, record.content_hash)
        legacy = record.idempotency_key != key and adapter.find(key) is not None
        if (
            versions is not None
            and ((record.content_hash, record.sku) in versions or "" in hashes)
            and not legacy
        ):
            continue
        if legacy:  # registered before the key named SKU and file; the rerun registered it anew
            note = f"superseded: {record.source_name} is registered again as {key}"
        elif not versions:
            note = f"withdrawn: {record.source_name} is no longer in the shoot"
        elif record.content_hash in hashes:
            skus = ", ".join(sorted(sku for sha, sku in versions if sha == record.content_hash))
            note = f"superseded: {record.source_name} is now SKU {skus} in the manifest"
        else:
            note = f"superseded: {record.source_name} was replaced by a new version in the shoot"
        dam_write_slot()
        withdrawn.append(
            adapter.update_approval(record.dam_id, ApprovalState.WITHDRAWN, by="cutline", note=note)
        )
    return withdrawn


def make_register(ctx: ShootContext) -> ImageWork:
    """Per-image registration of an auto-lane asset in the DAM named by settings."""
    # The shoot's DAM (frozen with its run); credentials are this process's own.
    adapter = create_adapter(ctx.config.dam_settings(get_settings()), ctx.output_root)
    presets_version = file_fingerprint(ctx.presets_file)
    state = WorkState(ctx.layout)
    allowance = DamWriteAllowance(get_settings().dam_writes_per_second)

    def register(item: ImageItem) -> None:
        key = stage_key("register", export_key(item, ctx, presets_version), adapter.describe())
        done = state.reusable(item, "register", key)
        if (
            done is not None
            and done.dam_id
            and adapter.find(idempotency_key(ctx.job_id, item.sku, item.source_name, item.sha256))
        ):
            item.dam_id = done.dam_id  # registered by an earlier run, and still in the DAM
            item.reused.append("register")
            return
        allowance.take()
        register_item(adapter, item, ctx.job_id, ApprovalState.AUTO_APPROVED, by="cutline-auto")
        state.remember(item, "register", key)

    return register
