"""Every use of a private Prefect API, in one place.

Prefect's public surface (`prefect`, `prefect.flows`, `prefect.states`, `prefect.input`,
`prefect.client.*`, `prefect.settings`) is kept across 3.x releases; anything under
`prefect.server.*` or `prefect._internal`, and underscored attributes, may change in any minor
release. Cutline needs a few of those where no public API does the job. Each is wrapped here as
one small function whose docstring says which internal it uses, why the public API does not do
it, and what breaks if Prefect changes it. `tests/test_prefect_internals.py` holds a contract test
per function (import path, signature, behaviour on a tiny example) that fails when Prefect
changes the internal, and a test that no other module imports `prefect.server` or
`prefect._internal`. `scripts/test_newest_prefect.sh` runs those tests, and the review tests,
against the newest Prefect 3.x on the package registry.

Prefect is imported inside the functions: this module is in `cutline.base`, which every layer
imports, and the CLI must start without loading Prefect's server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from pydantic import BaseModel

# --- The server's concurrency-lease storage (`prefect.server.concurrency.lease_storage`) ---

# Module names of Prefect's own lease storages, as PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE
# takes them. The setting is public; the module names it takes are Prefect's internals. If
# Prefect moves or renames them, a server told to use the filesystem storage fails to start
# (the module does not import), and `reclaim_unleased_slots` stops recognising a single-server
# storage and reclaims nothing.
MEMORY_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.memory"
FILESYSTEM_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
# Storages whose every lease belongs to the one server that keeps them (in its memory or its
# PREFECT_HOME). A shared storage (prefect-redis, several API servers) is not among them.
SINGLE_SERVER_LEASE_STORAGES = (MEMORY_LEASE_STORAGE, FILESYSTEM_LEASE_STORAGE)

# Leases read at once: far more than a studio's workers ever hold.
_LEASES_READ_AT_ONCE = 1_000_000


async def leased_slots_by_limit() -> dict[UUID, int]:
    """The concurrency slots that leases hold, per limit id: every lease on record in the
    configured lease storage, active or expired (Prefect's repossessor frees expired ones
    itself, so they still count as held).

    Wraps `prefect.server.concurrency.lease_storage.get_concurrency_lease_storage()` and the
    storage's `read_active_lease_ids(limit=)`, `read_expired_lease_ids(limit=)` and
    `read_lease(lease_id)` (a lease's `resource_ids` and `metadata.slots`). The public API only
    renews or releases a lease whose id the holder knows; nothing public lists them. It must
    run inside the server process (the storage is the server's memory or its PREFECT_HOME).

    If Prefect changes it: the embedded server's start-up check of leaked slots
    (`cutline.ops.prefect_server.reclaim_unleased_slots`) fails and is logged, and a slot left
    taken by a killed holder stays taken until someone frees it by hand."""
    from prefect.server.concurrency.lease_storage import get_concurrency_lease_storage

    storage = get_concurrency_lease_storage()
    lease_ids = set(await storage.read_active_lease_ids(limit=_LEASES_READ_AT_ONCE))
    lease_ids |= set(await storage.read_expired_lease_ids(limit=_LEASES_READ_AT_ONCE))
    held: dict[UUID, int] = {}
    for lease_id in lease_ids:
        lease = await storage.read_lease(lease_id)
        if lease is not None and lease.metadata is not None:
            for limit_id in lease.resource_ids:
                held[limit_id] = held.get(limit_id, 0) + lease.metadata.slots
    return held


# --- The server's database (`prefect.server.database`, `prefect.server.models`) ---


@asynccontextmanager
async def server_database_transaction() -> AsyncIterator[Any]:
    """A session of the Prefect server's own database, in one transaction (committed when the
    block ends without error).

    Wraps `prefect.server.database.provide_database_interface().session_context(
    begin_transaction=True)`. The public API goes through the HTTP API, which is not answering
    yet when the server checks its slots at start-up, and which has no way to lower a limit's
    active slots by a count (only to set them, racing the runs that take and free slots).

    If Prefect changes it: the start-up slot check fails and is logged (see
    `leased_slots_by_limit`)."""
    from prefect.server.database import provide_database_interface

    async with provide_database_interface().session_context(begin_transaction=True) as session:
        yield session


async def read_concurrency_limits(session: Any) -> Sequence[Any]:
    """Every global concurrency limit (v2) of the server's database, in ``session``: each has
    `id`, `name`, `active_slots` and `slot_decay_per_second`.

    Wraps `prefect.server.models.concurrency_limits_v2.read_all_concurrency_limits(session=,
    limit=None, offset=None)`; why not the public client: see `server_database_transaction`.

    If Prefect changes it: the start-up slot check fails and is logged."""
    from prefect.server.models import concurrency_limits_v2

    return await concurrency_limits_v2.read_all_concurrency_limits(
        session=session, limit=None, offset=None
    )


async def give_back_slots(session: Any, limit_id: UUID, slots: int) -> None:
    """Lower the active slots of one concurrency limit by ``slots``, in ``session``.

    Wraps `prefect.server.models.concurrency_limits_v2.bulk_decrement_active_slots(session=,
    concurrency_limit_ids=, slots=)`: one relative update in the transaction that read the
    limits, where the public client can only set an absolute count.

    If Prefect changes it: the start-up slot check fails and is logged; leaked slots stay."""
    from prefect.server.models import concurrency_limits_v2

    await concurrency_limits_v2.bulk_decrement_active_slots(
        session=session, concurrency_limit_ids=[limit_id], slots=slots
    )


# --- The server's app (`prefect.server.api.server`) ---


def server_app() -> Any:
    """Prefect's whole server as an ASGI app (REST API, UI, background services), as
    `prefect server start` serves it.

    Wraps `prefect.server.api.server.create_app(final=True)`. The public way to run a server is
    the `prefect server start` command, a process Cutline cannot wrap in its own ASGI
    middleware (quick retry hints on busy SQLite answers, the start-up slot check).

    If Prefect changes it: `python -m cutline.ops.prefect_server` (so `cutline up`) does not
    start; run `prefect server start` meanwhile, which loses only those two additions."""
    from prefect.server.api.server import create_app

    return create_app(final=True)


# --- Run-input forms (`prefect._internal.pydantic`, `RunInput._description`) ---


def run_input_schema(form: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a `RunInput` form exactly as Prefect stores it for a suspended run
    (`RunInput.save`, called by `suspend_flow_run(wait_for_input=...)`), which the UI draws the
    Resume form from.

    Wraps `prefect._internal.pydantic.v2_schema.create_v2_schema(name, model_base=form)`.
    `RunInput.save` is public but computes and stores the schema in one step, through the
    process's own client, schema before description: Cutline stores the schema of thousands of
    waiting runs itself (cached per form, with `x-` values beside it, description first so a
    stored schema means a whole form). Pydantic's `model_json_schema` is close but not the same
    (Prefect adds `definitions` beside `$defs` and a schema generator of its own).

    If Prefect changes it: the forms of review and sign-off runs created waiting may differ
    from what the UI expects (a field drawn wrongly or not at all)."""
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    return create_v2_schema(form.__name__, model_base=form)


def run_input_description(form: type[BaseModel]) -> str | None:
    """The markdown shown above a `RunInput` form, as given to
    `RunInput.with_initial_data(description=...)`; None when it has none.

    Wraps the private class attribute `RunInput._description`, which `with_initial_data` sets
    and `RunInput.save` reads: Prefect has no public getter for it.

    If Prefect changes it: review and sign-off runs created waiting show their form without its
    text (the image, the reasons, the preview link)."""
    description = getattr(form, "_description", None)
    return description if isinstance(description, str) and description else None
