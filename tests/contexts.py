"""A shoot context for tests that drive stages or the scheduler without a whole shoot."""

from __future__ import annotations

from pathlib import Path

from cutline.base.settings import get_settings
from cutline.domain.run_config import RunConfig
from tasks.context import ShootContext


def shoot_context(folder: Path, job_id: str, shoot: Path | None = None) -> ShootContext:
    """A context whose job folder is under ``folder`` (the shoot too unless ``shoot`` is
    given), with the session's settings frozen."""
    return ShootContext(
        job_id=job_id,
        shoot=str(shoot or folder),
        job_root=str(folder / "job"),
        config=RunConfig.freeze(get_settings()),
    )
