"""DAM registration: auto-lane assets land in the DAM, idempotently."""

from __future__ import annotations

from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.domain.limits import dam_write_slot
from cutline.domain.workstate import WorkState, file_fingerprint, stage_key
from dam_adapters import ApprovalState, AssetSubmission, DamAdapter, create_adapter, idempotency_key
from rules.engine import Lane
from tasks.context import ImageWork, ShootContext
from tasks.export import export_key


def submission_for(
    item: ImageItem, job_id: str, state: ApprovalState, *, by: str, note: str = ""
) -> AssetSubmission:
    """The DAM submission for an exported image."""
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
        approved_by=by,
        note=note,
        confidence=item.confidence,
        reasons=item.reasons,
        renditions={k: v for k, v in renditions.items() if v},
        metadata={"deadline": item.deadline, "brief": item.brief, "rules": ";".join(item.rules)},
    )


def register_item(
    adapter: DamAdapter,
    item: ImageItem,
    job_id: str,
    state: ApprovalState,
    *,
    by: str,
    note: str = "",
) -> None:
    """Register one image and remember its DAM id on the item."""
    record = adapter.register(submission_for(item, job_id, state, by=by, note=note))
    item.dam_id = record.dam_id


REGISTER_LANES = frozenset({Lane.AUTO})


def make_register(ctx: ShootContext) -> ImageWork:
    """Per-image registration of an auto-lane asset in the DAM named by settings."""
    # The shoot's DAM (frozen with its run); credentials are this process's own.
    adapter = create_adapter(ctx.config.dam_settings(get_settings()), ctx.output_root)
    presets_version = file_fingerprint(ctx.presets_file)
    state = WorkState(ctx.layout)

    def register(item: ImageItem) -> None:
        key = stage_key("register", export_key(item, ctx, presets_version), adapter.describe())
        done = state.reusable(item, "register", key)
        if (
            done is not None
            and done.dam_id
            and adapter.find(idempotency_key(ctx.job_id, item.sha256))
        ):
            item.dam_id = done.dam_id  # registered by an earlier run, and still in the DAM
            item.reused.append("register")
            return
        dam_write_slot()
        register_item(adapter, item, ctx.job_id, ApprovalState.AUTO_APPROVED, by="cutline-auto")
        state.remember(item, "register", key)

    return register
