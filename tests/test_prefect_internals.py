"""The private Prefect APIs Cutline uses, held to what Cutline relies on.

Each function of `cutline.base.prefect_internals` wraps one Prefect internal; a test here fails
when Prefect changes that internal (its import path, its signature, what it does on a tiny
example), so a new Prefect release is caught by the contract tests, not by a shoot. And no
module outside that adapter may reach into `prefect.server` or `prefect._internal`.
`scripts/test_newest_prefect.sh` runs this file against the newest Prefect 3.x there is.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal
from uuid import uuid4

from prefect.input import RunInput
from pydantic import BaseModel

from cutline.base import prefect_internals

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = ROOT / "cutline" / "base" / "prefect_internals.py"
# Every folder of the project's own code (the tests may look inside Prefect to check it).
SOURCE_DIRS = ("cutline", "flows", "tasks", "rules", "dam_adapters", "benchmarks", "scripts")


# --- Nothing outside the adapter reaches into Prefect's internals ---

_PRIVATE_MODULE = re.compile(r"prefect\.(server|_internal)(\.[A-Za-z_]\w*)*")
# Underscored attributes of Prefect objects Cutline once read (the sync client's httpx client,
# a RunInput's description); `self._x` and `cls._x` are a class's own business.
_PRIVATE_PREFECT_ATTRIBUTES = {"_client", "_description"}


def private_prefect_uses(source: str) -> list[str]:
    """Where ``source`` imports `prefect.server` / `prefect._internal`, names one of their
    modules in a string (a setting's value, `importlib`), or reads a known private attribute of
    a Prefect object: "line N: what", one per use."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _PRIVATE_PREFECT_ATTRIBUTES
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append((node.lineno, f".{node.attr}"))
            continue
        for name in names:
            if _PRIVATE_MODULE.fullmatch(name):
                found.append((node.lineno, name))
                break
    return [f"line {line}: {what}" for line, what in sorted(found)]


def test_the_check_finds_every_kind_of_private_use() -> None:
    """The check itself, on code that does each thing it must catch (and what it must not)."""
    offending = "\n".join(
        [
            "import prefect.server.database",
            "from prefect._internal.pydantic.v2_schema import create_v2_schema",
            "from prefect import server",
            'STORAGE = "prefect.server.concurrency.lease_storage.filesystem"',
            'client._client.get("/health")',
            "text = form._description",
        ]
    )
    assert [use.split(":")[0] for use in private_prefect_uses(offending)] == [
        f"line {n}" for n in range(1, 7)
    ]
    allowed = "\n".join(
        [
            "import prefect",
            "from prefect.states import Suspended",
            "from prefect.server_helpers import x",  # not prefect.server
            '"""Runs prefect.server.api.server.create_app, see docs."""',  # prose, not a name
            "self._client.request('GET', '/')",
            "cls._description",
        ]
    )
    assert private_prefect_uses(allowed) == []


def test_only_the_adapter_uses_prefect_internals() -> None:
    files = sorted(
        path
        for folder in SOURCE_DIRS
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    )
    assert ADAPTER in files and len(files) > 50, "the walk missed the project's source"
    offenders = {
        str(path.relative_to(ROOT)): uses
        for path in files
        if path != ADAPTER and (uses := private_prefect_uses(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, (
        "Private Prefect APIs used outside cutline/base/prefect_internals.py: move each into "
        f"that adapter (with its contract test here) or use a public API: {offenders}"
    )


# --- Lease storage: prefect.server.concurrency.lease_storage ---


def test_lease_storage_module_names_are_prefects_storages() -> None:
    from prefect.server.concurrency.lease_storage import ConcurrencyLeaseStorageModule
    from prefect.settings import PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE

    for name in prefect_internals.SINGLE_SERVER_LEASE_STORAGES:
        module = importlib.import_module(name)
        assert isinstance(module, ConcurrencyLeaseStorageModule), name
    # A server left at Prefect's default keeps its leases in memory: one of the storages whose
    # leases are all its own (otherwise the start-up slot check would silently do nothing).
    assert PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE.value() in (
        prefect_internals.SINGLE_SERVER_LEASE_STORAGES
    )


def test_lease_storage_calls_keep_their_signatures() -> None:
    from prefect.server.concurrency.lease_storage import (
        ConcurrencyLeaseStorage,
        get_concurrency_lease_storage,
    )

    assert list(inspect.signature(get_concurrency_lease_storage).parameters) == []
    for method, parameter in [
        ("read_active_lease_ids", "limit"),
        ("read_expired_lease_ids", "limit"),
        ("read_lease", "lease_id"),
    ]:
        assert parameter in inspect.signature(getattr(ConcurrencyLeaseStorage, method)).parameters


def test_leased_slots_are_read_from_every_lease_on_record(tmp_path: Path) -> None:
    """Active and expired leases both count, per limit, by their slots."""
    from prefect.server.concurrency.lease_storage import (
        ConcurrencyLimitLeaseMetadata,
        get_concurrency_lease_storage,
    )
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE,
        temporary_settings,
    )

    model, job, untouched = uuid4(), uuid4(), uuid4()

    async def lease_and_read() -> dict:
        storage = get_concurrency_lease_storage()
        for resources, ttl, slots in [
            ([model, job], timedelta(minutes=5), 2),
            ([model], timedelta(seconds=-60), 1),  # expired, not yet repossessed
        ]:
            metadata = ConcurrencyLimitLeaseMetadata(slots=slots)
            await storage.create_lease(resource_ids=resources, ttl=ttl, metadata=metadata)
        return await prefect_internals.leased_slots_by_limit()

    with temporary_settings(
        updates={
            PREFECT_HOME: tmp_path,
            PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE: prefect_internals.FILESYSTEM_LEASE_STORAGE,
        }
    ):
        held = asyncio.run(lease_and_read())
    assert held == {model: 3, job: 2}
    assert untouched not in held
    assert any((tmp_path / "concurrency_leases").iterdir()), "leases were not kept on disk"


# --- The server's database: prefect.server.database, prefect.server.models ---


def test_concurrency_limits_are_read_and_given_back_in_one_transaction(tmp_path: Path) -> None:
    """On a tiny SQLite database of Prefect's own schema: the limits are read with their
    slots, and giving back lowers one limit's active slots by the count and nothing else."""
    from prefect.server.database import provide_database_interface
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    async def take_read_and_give_back() -> tuple[dict, dict]:
        db = provide_database_interface()
        async with (await db.engine()).begin() as connection:
            await connection.run_sync(db.ConcurrencyLimitV2.__table__.create)
        async with prefect_internals.server_database_transaction() as session:
            session.add(db.ConcurrencyLimitV2(name="cutline-model", limit=4, active_slots=3))
            session.add(db.ConcurrencyLimitV2(name="cutline-job-a", limit=2, active_slots=2))
        async with prefect_internals.server_database_transaction() as session:
            limits = await prefect_internals.read_concurrency_limits(session)
            before = {
                limit.name: (limit.active_slots, limit.slot_decay_per_second) for limit in limits
            }
            model = next(limit for limit in limits if limit.name == "cutline-model")
            await prefect_internals.give_back_slots(session, model.id, 2)
        async with prefect_internals.server_database_transaction() as session:
            after = {
                limit.name: limit.active_slots
                for limit in await prefect_internals.read_concurrency_limits(session)
            }
        return before, after

    url = f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"
    with temporary_settings(updates={PREFECT_API_DATABASE_CONNECTION_URL: url}):
        before, after = asyncio.run(take_read_and_give_back())
    assert before == {"cutline-model": (3, 0.0), "cutline-job-a": (2, 0.0)}
    assert after == {"cutline-model": 1, "cutline-job-a": 2}


def test_database_calls_keep_their_signatures() -> None:
    from prefect.server.database import PrefectDBInterface, provide_database_interface
    from prefect.server.models import concurrency_limits_v2

    assert list(inspect.signature(provide_database_interface).parameters) == []
    assert "begin_transaction" in inspect.signature(PrefectDBInterface.session_context).parameters
    read = inspect.signature(concurrency_limits_v2.read_all_concurrency_limits).parameters
    assert {"session", "limit", "offset"} <= set(read)
    decrement = inspect.signature(concurrency_limits_v2.bulk_decrement_active_slots).parameters
    assert {"session", "concurrency_limit_ids", "slots"} <= set(decrement)


# --- The server's app: prefect.server.api.server.create_app ---


def test_the_server_app_is_prefects_whole_api(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from prefect.server.api.server import create_app
    from prefect.settings import PREFECT_HOME, temporary_settings

    assert "final" in inspect.signature(create_app).parameters
    with temporary_settings(updates={PREFECT_HOME: tmp_path}):
        app = prefect_internals.server_app()
    assert isinstance(app, FastAPI)
    paths = {getattr(route, "path", "") for route in app.router.routes}
    assert "/api" in paths or any(path.startswith("/api/") for path in paths), sorted(paths)


# --- Run-input forms: prefect._internal.pydantic.v2_schema, RunInput._description ---


class _Crop(BaseModel):
    margin: int = 4


class _Decision(RunInput):
    decision: Literal["approve", "reject"]
    note: str = ""
    crop: _Crop = _Crop()


def test_the_form_schema_is_the_one_prefect_stores_for_a_run_input() -> None:
    from prefect._internal.pydantic.v2_schema import create_v2_schema
    from prefect.input import run_input

    # RunInput.save (what `suspend_flow_run(wait_for_input=...)` stores) builds the schema with
    # this very function: Cutline's forms are then the ones Prefect would store.
    assert run_input.create_v2_schema is create_v2_schema
    assert {"name_", "model_base"} <= set(inspect.signature(create_v2_schema).parameters)

    schema = prefect_internals.run_input_schema(_Decision)
    assert schema["title"] == "_Decision"
    assert schema["required"] == ["decision"]
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert schema["properties"]["note"]["default"] == ""
    assert "_Crop" in schema["definitions"]  # the UI resolves nested forms here
    assert '"#/definitions/_Crop"' in json.dumps(schema)

    with_defaults = _Decision.with_initial_data(decision="approve", note="ok")
    assert prefect_internals.run_input_schema(with_defaults)["properties"]["decision"][
        "default"
    ] == ("approve")


def test_the_form_description_is_the_one_given_with_its_initial_data() -> None:
    assert "_description" in RunInput.__private_attributes__
    form = _Decision.with_initial_data(description="**Glassware** at 0.41", note="")
    assert prefect_internals.run_input_description(form) == "**Glassware** at 0.41"
    assert prefect_internals.run_input_description(_Decision) is None
    assert prefect_internals.run_input_description(_Decision.with_initial_data(note="x")) is None


# --- Behaviour Cutline copies with public objects: a run created already suspended ---


def _code(function: object) -> str:
    return " ".join(inspect.getsource(function).split())


def test_suspend_flow_run_still_waits_as_cutline_creates_runs_waiting() -> None:
    """`cutline.services.waiting_run` creates review and sign-off runs already Suspended with
    the state `suspend_flow_run` would propose (public `Suspended` and `keyset_from_paused_state`)
    and the pause key recorded as fired; the flow's own `suspend_flow_run(key=...)` then returns
    the stored answer instead of suspending again. If this fails, read the new
    `suspend_flow_run` and Prefect's `HandlePausingFlows` rule and adjust `waiting_run`."""
    import prefect.server.models  # noqa: F401  core_policy alone is a circular import in Prefect
    from prefect.flow_runs import suspend_flow_run
    from prefect.server.orchestration.core_policy import HandlePausingFlows

    suspend = _code(suspend_flow_run)
    assert "Suspended(timeout_seconds=timeout, pause_key=pause_key)" in suspend
    assert "keyset_from_paused_state(proposed_state)" in suspend
    assert (
        "if state.is_running():" in suspend and "wait_for_input.load(run_input_keyset)" in suspend
    )
    rule = _code(HandlePausingFlows)
    assert "if self.key in pause_keys:" in rule and '["pause_keys"].add(self.key)' in rule
