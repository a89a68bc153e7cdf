"""DAM adapters: one interface for registering approved cutouts, several backends."""

from dam_adapters.base import (
    ApprovalState,
    AssetRecord,
    AssetSubmission,
    DamAdapter,
    idempotency_key,
)
from dam_adapters.registry import create_adapter, known_adapters

__all__ = [
    "ApprovalState",
    "AssetRecord",
    "AssetSubmission",
    "DamAdapter",
    "create_adapter",
    "idempotency_key",
    "known_adapters",
]
