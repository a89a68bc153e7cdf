"""The per-image record every stage reads and extends: references and facts, never pixels."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from cutline.base import storage
from cutline.base.errors import ConfigError
from cutline.base.naming import safe_component
from cutline.base.redact import redact
from rules.engine import Lane

# Letters, digits, '.', '_', '-'; first and last a letter or digit. A trailing '.' or '_' was
# dropped from the folder name, so 'JID-1.' and 'JID-1' shared one job folder, ledger and DAM
# records; now the folder name is the job ID itself.
_JOB_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,78}[A-Za-z0-9])?$")


def validate_job_id(job_id: str) -> str:
    """A job ID is used as a folder name and run name: letters, digits, '.', '_', '-',
    starting and ending with a letter or digit."""
    if not _JOB_ID.match(job_id or ""):
        raise ConfigError(
            f"Job ID {job_id!r} is not usable.",
            hint="Use 1-80 letters, digits, '.', '_' or '-', starting and ending with a letter "
            "or digit (e.g. SS26-0142).",
        )
    return job_id


def job_key(job_id: str) -> str:
    """What two job IDs must not share: the ID in lower case with '.', '_' and '-' alike.
    'SS26-0142', 'ss26-0142' and 'SS26_0142' would share a folder on a case-insensitive disk
    (macOS, Windows shares), one artifact key and one entry in a producer's memory."""
    return re.sub(r"[._-]", "-", job_id.lower())


class ImageItem(BaseModel):
    """One input file's journey through the shoot; becomes its ledger row."""

    model_config = ConfigDict(validate_assignment=True)

    index: int = Field(description="Position in the shoot's sorted file list.")
    source: str = Field(description="Path or URI of the original file.")
    source_name: str = Field(description="Path inside the shoot folder, '/'-separated, as given.")
    image_id: str = Field(description="Path-safe unique name used for every output of this image.")
    sku: str = ""
    category: str = ""
    campaign: str = ""
    channels: list[str] = Field(default_factory=list)
    deadline: str = ""
    brief: str = ""
    reference: str = ""
    manifest_line: int | None = None
    sha256: str = ""
    width: int | None = None
    height: int | None = None
    confidence: float | None = None
    signals: dict[str, float] = Field(default_factory=dict)
    lane: Lane | None = None
    rules: list[str] = Field(default_factory=list)
    reasons: str = ""
    queue: str = ""
    priority: int | None = None
    refinement: str = Field(
        default="", description="Edge refinement the rules applied to the AI mask ('' for none)."
    )
    model: str = Field(
        default="", description="The model whose mask the image has (the rules' per category)."
    )
    decontaminated: bool = Field(
        default=False,
        description="Whether its renditions carry the subject's own colours in the soft edge.",
    )
    mask: str = ""
    png: str = ""
    psd: str = ""
    jpg: list[str] = Field(default_factory=list)
    dam_id: str = ""
    review_run_id: str = ""
    review_state: str = Field(default="", description="queued, approved, replaced or rejected.")
    reviewed_by: str = ""
    review_note: str = ""
    error: str = ""
    reused: list[str] = Field(
        default_factory=list,
        description="Stages whose result an earlier run of this job left and this run reused.",
    )
    seconds: dict[str, float] = Field(default_factory=dict, description="Wall seconds per stage.")
    cpu_seconds: dict[str, float] = Field(
        default_factory=dict,
        description="CPU seconds per stage on the worker thread (onnxruntime's own threads excluded).",
    )

    @property
    def failed(self) -> bool:
        """Whether the image already ended in the failed lane."""
        return self.lane == Lane.FAILED

    def fail(self, stage: str, message: str) -> None:
        """Put the image in the failed lane with a reason naming the stage (any password in
        a URL or authorization value in the message is redacted: it goes to the ledger)."""
        self.lane = Lane.FAILED
        self.error = f"{stage}: {redact(message)}"
        self.reasons = self.error


@dataclass(frozen=True)
class JobLayout:
    """Where a job's outputs go: one folder per job under the output root."""

    root: str  # the job folder (path or URI)

    @classmethod
    def for_job(cls, output_root: str, job_id: str) -> JobLayout:
        """The layout of ``job_id`` under ``output_root``."""
        return cls(storage.join(output_root, safe_component(job_id)))

    def path(self, kind: str, image_id: str, suffix: str) -> str:
        """Output path of one rendition kind (masks, png, psd, jpg/<channel>) for an image."""
        return storage.join(self.root, *kind.split("/"), f"{image_id}{suffix}")

    @property
    def ledger(self) -> str:
        """The job's ledger CSV."""
        return storage.join(self.root, "ledger.csv")

    @property
    def reviews(self) -> str:
        """Folder of review outcome records, one JSON per decided image."""
        return storage.join(self.root, "reviews")

    def review_record(self, image_id: str) -> str:
        """The outcome record of one image's review."""
        return storage.join(self.root, "reviews", f"{image_id}.json")

    @property
    def summary(self) -> str:
        """The job's summary JSON."""
        return storage.join(self.root, "summary.json")

    @property
    def run_config(self) -> str:
        """The settings the job's latest run froze (JSON), for the runs that follow it."""
        return storage.join(self.root, "run-config.json")
