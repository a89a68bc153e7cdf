"""DAM registration: auto-lane assets land in the DAM, idempotently."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable

from cutline.base.errors import ConfigError, CutlineError
from cutline.base.settings import get_settings
from cutline.domain.items import ImageItem
from cutline.domain.workstate import WorkState, stage_key
from cutline.services.limits import DamWriteAllowance, dam_write_slot
from dam_adapters import (
    ApprovalState,
    AssetRecord,
    AssetSubmission,
    DamAdapter,
    create_adapter,
    idempotency_key,
)
from dam_adapters.base import first_registered, restored_note, withdraw_duplicate
from dam_adapters.http import DamHttpError
from rules.engine import Lane
from tasks.context import PerImage, ShootContext, StageWork, run_logger
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

# A run whose shoot lost more than this many of the job's assets, and more than this share of
# them, at once withdraws nothing unless told to: a card or share half copied or mounted.
BULK_WITHDRAWAL_COUNT = 5
BULK_WITHDRAWAL_SHARE = 0.5
ALLOW_FLAG = "--allow-bulk-withdrawal"


class WithdrawalRefused(CutlineError):
    """The shoot lost all or most of the job's files at once; nothing was withdrawn."""


def check_withdrawals(
    job_id: str, shoot: str, records: list[AssetRecord], names: set[str], allow_bulk: bool
) -> None:
    """Refuse (WithdrawalRefused) to withdraw the assets of a shoot that has no files, or lost
    most of them at once (see BULK_WITHDRAWAL_*), unless ``allow_bulk``: an unmounted card or
    a half-copied share must not withdraw what the studio has signed off. ``names`` are the
    shoot's files this run."""
    live = [r for r in records if r.approval_state != ApprovalState.WITHDRAWN]
    gone = [r for r in live if r.source_name not in names]
    if allow_bulk or not gone:
        return
    hint = (
        f"If the files really left the shoot, rerun with {ALLOW_FLAG} (allow_bulk_withdrawal in a Custom run) to withdraw their "
        "assets."
    )
    if not names:
        raise WithdrawalRefused(
            f"The shoot folder {shoot} has no images, while job {job_id} has {len(live)} "
            "assets in the DAM: is the card or share mounted? Nothing was withdrawn.",
            hint=f"Mount it and rerun the job. {hint}",
        )
    if len(gone) > BULK_WITHDRAWAL_COUNT and len(gone) > BULK_WITHDRAWAL_SHARE * len(live):
        missing = sorted({r.source_name for r in gone})
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise WithdrawalRefused(
            f"{len(gone)} of the {len(live)} assets job {job_id} has in the DAM have lost their "
            f"file in the shoot folder {shoot} ({shown}): is the card or share only partly "
            "copied or mounted? Nothing was withdrawn.",
            hint=f"Restore the files and rerun the job. {hint}",
        )


def refuse_lost_shoot(
    adapter: DamAdapter, job_id: str, shoot: str, names: set[str], allow_bulk: bool
) -> None:
    """Before a run's work: `check_withdrawals` against what the DAM holds for the job. A DAM
    that refuses this host's credentials stops the run here (ConfigError); one that cannot be
    listed now for another reason is left to the images' registrations (each fails alone);
    `withdraw_stale_assets` checks again before it withdraws anything."""
    try:
        records = adapter.list_job(job_id)
    except Exception as exc:  # any DAM failure: the run goes on, checked again later
        if isinstance(exc, DamHttpError) and exc.refused_credentials:
            # Not a passing failure: every registration would be refused the same way.
            raise ConfigError(
                f"The DAM {adapter.describe()} refused the credentials of the host running "
                f"this shoot, {socket.gethostname()}: {exc.message}",
                hint="Give the process that runs shoots (the stack's worker or another host's) "
                "a valid CUTLINE_DAM_HTTP_TOKEN; credentials are never sent with a run.",
            ) from None
        run_logger().warning(
            "Could not list job %s in %s before the run (%s); withdrawals are checked after it",
            job_id,
            adapter.describe(),
            exc,
        )
        return
    check_withdrawals(job_id, shoot, records, names, allow_bulk)


def withdraw_duplicates(adapter: DamAdapter, records: list[AssetRecord]) -> list[AssetRecord]:
    """Every second record the DAM holds for one image (one idempotency key: a DAM that
    ignored the key registered it twice), withdrawn with the reason; `first_registered`
    stands for the image, as the adapter's find() returns it."""
    by_key: dict[str, list[AssetRecord]] = {}
    for record in records:
        by_key.setdefault(record.idempotency_key, []).append(record)
    withdrawn = []
    for group in by_key.values():
        kept = first_registered(group)
        for record in group:
            if record.dam_id != kept.dam_id and record.approval_state != ApprovalState.WITHDRAWN:
                dam_write_slot()
                withdrawn.append(withdraw_duplicate(adapter, record, kept))
    return withdrawn


def withdraw_stale_assets(
    adapter: DamAdapter,
    job_id: str,
    current: dict[str, set[tuple[str, str]]],
    *,
    shoot: str = "",
    allow_bulk: bool = False,
) -> list[AssetRecord]:
    """Make the DAM match the shoot after a rerun: every asset of the job whose source file
    is no longer in the shoot, whose content was replaced by a new version under the same
    name, or whose file now belongs to another SKU, is withdrawn (a state of its own, with the
    reason, kept in its history) instead of staying approved next to the new one; so is a
    second record of one image (see `withdraw_duplicates`). A shoot that lost all or most of
    its files withdraws nothing (see `check_withdrawals`).

    ``current`` maps each input's name in the shoot to the (content hash, SKU) pairs seen this
    run (an empty hash when the file could not be read, which withdraws nothing of that name).
    """
    records = adapter.list_job(job_id)
    check_withdrawals(job_id, shoot or f"of job {job_id}", records, set(current), allow_bulk)
    withdrawn = withdraw_duplicates(adapter, records)
    gone = {r.dam_id for r in withdrawn}
    for record in records:
        if record.approval_state == ApprovalState.WITHDRAWN or record.dam_id in gone:
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


REVIEWED_STATES = {
    "approved": ApprovalState.APPROVED,
    "replaced": ApprovalState.REPLACED,
    "rejected": ApprovalState.REJECTED,
}


def lane_state(row: dict[str, str]) -> tuple[ApprovalState, str] | None:
    """The approval state (and who decided it) a ledger row says its asset is in, or None
    when the row has no asset (failed, or a review still waiting)."""
    if row.get("lane") == Lane.AUTO.value:
        return ApprovalState.AUTO_APPROVED, "cutline-auto"
    state = REVIEWED_STATES.get(row.get("review_state", ""))
    if row.get("lane") == Lane.REVIEW.value and state is not None:
        return state, row.get("reviewed_by") or "retoucher"
    return None


def reinstate_restored_assets(
    adapter: DamAdapter, job_id: str, ledger: Callable[[], Iterable[dict[str, str]]]
) -> list[AssetRecord]:
    """Make the DAM match the ledger for files that came back: an asset withdrawn because
    its file left the shoot (or changed, or moved to another SKU) whose file is back as it
    was goes back to the state its lane gives it (auto-approved, or what its review decided),
    with "restored: X is back in the shoot" in its history. ``ledger``: the run's ledger rows,
    with decided reviews merged in (read only when some asset of the job is withdrawn)."""
    withdrawn = {
        r.dam_id: r
        for r in adapter.list_job(job_id)
        if r.approval_state == ApprovalState.WITHDRAWN
        and r.idempotency_key == idempotency_key(job_id, r.sku, r.source_name, r.content_hash)
    }
    restored: list[AssetRecord] = []
    for row in ledger() if withdrawn else ():
        record = withdrawn.get(row.get("dam_id", ""))
        live = lane_state(row)
        if record is None or live is None:
            continue
        if record.idempotency_key != idempotency_key(
            job_id, row["sku"], row["source_name"], row["sha256"]
        ):
            continue  # the ledger's file is another version or SKU: not this asset
        del withdrawn[record.dam_id]
        dam_write_slot()
        restored.append(
            adapter.update_approval(
                record.dam_id, live[0], by=live[1], note=restored_note(record.source_name)
            )
        )
    return restored


def make_register(ctx: ShootContext) -> StageWork:
    """Per-image registration of an auto-lane asset in the DAM named by settings."""
    # The shoot's DAM (frozen with its run); credentials are this process's own.
    adapter = create_adapter(ctx.config.dam_settings(get_settings()), ctx.output_root)
    presets_version = ctx.config.presets_fingerprint
    state = WorkState(ctx.layout)
    allowance = DamWriteAllowance(get_settings().dam_writes_per_second)

    def register(item: ImageItem) -> None:
        key = stage_key("register", export_key(item, ctx, presets_version), adapter.describe())
        done = state.reusable(item, "register", key)
        found = (
            adapter.find(idempotency_key(ctx.job_id, item.sku, item.source_name, item.sha256))
            if done is not None and done.dam_id
            else None
        )
        if found is not None and found.approval_state != ApprovalState.WITHDRAWN:
            item.dam_id = found.dam_id  # registered by an earlier run, and still in the DAM
            item.reused.append("register")
            return
        if found is not None:  # registering it again makes it live, "restored: ..." in history
            run_logger().info(
                "%s (%s) is back in the shoot: asset %s is auto-approved again",
                item.sku,
                item.source_name,
                found.dam_id,
            )
        allowance.take()
        register_item(adapter, item, ctx.job_id, ApprovalState.AUTO_APPROVED, by="cutline-auto")
        state.remember(item, "register", key)

    return PerImage(register)
