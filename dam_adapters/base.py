"""The DAM interface the flows are written against, and the records it exchanges."""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import AliasChoices, BaseModel, Field


class ApprovalState(StrEnum):
    """Where an asset stands with people."""

    AUTO_APPROVED = "auto-approved"  # published by the rules without a person
    APPROVED = "approved"  # a retoucher approved the AI mask as it is
    REPLACED = "replaced"  # a retoucher published their own retouched mask instead
    REJECTED = "rejected"  # a retoucher asked for a reshoot
    SIGNED_OFF = "signed-off"  # the producer (or client) signed the shoot off
    SENT_BACK = "sent-back"  # the producer sent it back to the review lane
    WITHDRAWN = "withdrawn"  # its source left the shoot or was replaced by a new version


def idempotency_key(job_id: str, sku: str, source_name: str, source_sha256: str) -> str:
    """The key that makes registration idempotent: the asset the studio means, i.e. this
    file (by its name in the shoot and its content) as this SKU in this job. Identical bytes
    under two SKUs or two names are two assets. SKU and name are hashed, so the key stays
    ASCII (it travels as an HTTP header)."""
    who = hashlib.sha256(f"{sku}\x1f{source_name}".encode()).hexdigest()[:16]
    return f"{job_id}:{who}:{source_sha256}"


def dam_id_for(key: str) -> str:
    """A stable asset id derived from the idempotency key (same key, same id)."""
    return "cl-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def utc_now() -> str:
    """Current UTC time as ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class AssetSubmission(BaseModel):
    """What the pipeline hands a DAM for one image."""

    job_id: str = Field(min_length=1)
    sku: str
    category: str = ""
    campaign: str = ""
    channels: list[str] = Field(default_factory=list)
    source: str = Field(description="Original file (path or URI).")
    source_name: str = Field(description="The file's path inside the shoot, as given.")
    content_hash: str = Field(description="SHA-256 of the source file.")
    approval_state: ApprovalState
    decided_by: str = Field(
        default="",
        validation_alias=AliasChoices("decided_by", "approved_by"),  # records before the rename
        description="Who took the current approval decision (retoucher, producer, or the rules).",
    )
    note: str = ""
    confidence: float | None = None
    reasons: str = ""
    renditions: dict[str, str] = Field(
        default_factory=dict,
        description="Rendition kind (png, psd, mask, jpg:<channel>) -> file path or URI.",
    )
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def approved_by(self) -> str:
        """The decider under its old name (it was set on rejections too: see decided_by)."""
        return self.decided_by

    @property
    def key(self) -> str:
        """Idempotency key of this submission."""
        return idempotency_key(self.job_id, self.sku, self.source_name, self.content_hash)


class AssetRecord(AssetSubmission):
    """An asset as the DAM holds it."""

    dam_id: str
    idempotency_key: str
    created_at: str
    updated_at: str
    revision: int = Field(ge=1, description="Incremented on every update of the record.")
    history: list[dict[str, str]] = Field(
        default_factory=list, description="Approval-state changes: state, by, at, note."
    )


LANE_DECISIONS = frozenset(
    {
        ApprovalState.AUTO_APPROVED,
        ApprovalState.APPROVED,
        ApprovalState.REPLACED,
        ApprovalState.REJECTED,
    }
)


class Provenance(BaseModel):
    """How an asset got where it is, whatever came after: the decision of its lane (the
    rules' auto-approval or a retoucher's approve, replace or reject) and who took it, and
    the producer who signed it off, if one has. A sign-off moves the record's approval state
    and decider to the producer; the lane's decision stays in the record's history, and this
    reads it back, so a sheet made after a sign-off (a rerun, a reopened SKU) still says
    which assets the rules published and which a retoucher decided."""

    lane: str = Field(description="'auto' (published by the rules) or 'review' (a person).")
    decision: ApprovalState | None = Field(
        description="The lane's decision, or None while an asset is sent back (undecided)."
    )
    decided_by: str = Field(description="Who took the lane's decision ('' when none).")
    signed_off_by: str = Field(description="The producer who signed it off ('' when not).")


def provenance(record: AssetRecord) -> Provenance:
    """The asset's lane, lane decision and sign-off, from its state and history (see
    Provenance). A record without history (a DAM that keeps none) is read from its state."""
    signed = record.decided_by if record.approval_state == ApprovalState.SIGNED_OFF else ""
    decision, by = None, ""
    if record.approval_state in LANE_DECISIONS:
        decision, by = record.approval_state, record.decided_by
    elif record.approval_state != ApprovalState.SENT_BACK:
        for change in reversed(record.history):
            state = change.get("state", "")
            if state in LANE_DECISIONS:
                decision, by = ApprovalState(state), change.get("by", "")
                break
    lane = "auto" if decision == ApprovalState.AUTO_APPROVED else "review"
    return Provenance(lane=lane, decision=decision, decided_by=by, signed_off_by=signed)


def restored_note(source_name: str) -> str:
    """The history note of an asset set live again because its file is back in the shoot."""
    return f"restored: {source_name} is back in the shoot"


def first_registered(records: list[AssetRecord]) -> AssetRecord:
    """The record that stands for an image when a DAM holds several under one idempotency key
    (a DAM that ignored the key registered it twice): the first created, then the lowest id,
    so every lookup and every run picks the same one."""
    return min(records, key=lambda r: (r.created_at, r.dam_id))


def withdraw_duplicate(
    adapter: DamAdapter, duplicate: AssetRecord, kept: AssetRecord
) -> AssetRecord:
    """Withdraw a second record of one image (a DAM that ignored the idempotency key), saying
    which record stands for it."""
    return adapter.update_approval(
        duplicate.dam_id,
        ApprovalState.WITHDRAWN,
        by="cutline",
        note=f"duplicate: the DAM registered {duplicate.source_name} twice under one "
        f"idempotency key; {kept.dam_id} stands for it",
    )


def unchanged(existing: AssetRecord, asset: AssetSubmission, renditions: dict[str, str]) -> bool:
    """Whether registering ``asset`` again would leave ``existing`` as it is."""
    fields = set(AssetSubmission.model_fields) - {"renditions"}
    return existing.renditions == renditions and existing.model_dump(
        include=fields
    ) == asset.model_dump(include=fields)


def next_record(
    existing: AssetRecord | None,
    asset: AssetSubmission,
    renditions: dict[str, str],
    dam_id: str | None = None,
) -> AssetRecord:
    """The record a registration produces: a new one, the existing one updated in place
    (same id and creation time, revision + 1, approval changes appended to history), or the
    existing one itself when the submission changes nothing (a rerun re-registering an
    image it was interrupted after registering): callers skip the write then."""
    if existing is not None and unchanged(existing, asset, renditions):
        return existing
    now = utc_now()
    history = list(existing.history) if existing else []
    if existing is None or existing.approval_state != asset.approval_state:
        note = asset.note
        if existing is not None and existing.approval_state == ApprovalState.WITHDRAWN:
            note = note or restored_note(asset.source_name)  # its file is back: live again
        history.append(
            {
                "state": asset.approval_state.value,
                "by": asset.decided_by,
                "at": now,
                "note": note,
            }
        )
    return AssetRecord(
        **asset.model_dump(exclude={"renditions"}),
        renditions=renditions,
        dam_id=existing.dam_id if existing else (dam_id or dam_id_for(asset.key)),
        idempotency_key=asset.key,
        created_at=existing.created_at if existing else now,
        updated_at=now,
        revision=existing.revision + 1 if existing else 1,
        history=history,
    )


def approval_update(record: AssetRecord, state: ApprovalState, by: str, note: str) -> AssetRecord:
    """The record after an approval-state change, with the change in its history."""
    state = ApprovalState(state)
    now = utc_now()
    return record.model_copy(
        update={
            "approval_state": state,
            "decided_by": by,
            "note": note,
            "updated_at": now,
            "revision": record.revision + 1,
            "history": [*record.history, {"state": state.value, "by": by, "at": now, "note": note}],
        }
    )


class DamAdapter(ABC):
    """A DAM the pipeline registers assets in. Every write must be idempotent."""

    name: str = ""

    @abstractmethod
    def register(self, asset: AssetSubmission) -> AssetRecord:
        """Create the asset, or update it in place when its idempotency key exists."""

    @abstractmethod
    def update_approval(
        self, dam_id: str, state: ApprovalState, *, by: str, note: str = ""
    ) -> AssetRecord:
        """Change an asset's approval state, recording who and why."""

    @abstractmethod
    def find(self, key: str) -> AssetRecord | None:
        """The asset with this idempotency key, if registered."""

    @abstractmethod
    def get(self, dam_id: str) -> AssetRecord:
        """The asset with this id; KeyError when unknown."""

    @abstractmethod
    def list_job(self, job_id: str) -> list[AssetRecord]:
        """Every asset registered for a job, ordered by SKU then source name."""

    def describe(self) -> str:
        """Where this adapter keeps assets, for summaries (no secrets)."""
        return self.name


class FileRecordAdapter(DamAdapter):
    """Shared behaviour of adapters that keep whole records themselves (local catalog,
    object store): approval updates are read-modify-write of the record under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @abstractmethod
    def _write(self, record: AssetRecord) -> None:
        """Store a record (create or replace)."""

    def update_approval(
        self, dam_id: str, state: ApprovalState, *, by: str, note: str = ""
    ) -> AssetRecord:
        """Change the approval state and append it to the record's history."""
        with self._lock:
            updated = approval_update(self.get(dam_id), state, by, note)
            self._write(updated)
            return updated
