"""The deployments declared in prefect.yaml, registered on a work pool.

The stack's worker (cutline/ops/pool_worker.py) registers them at start exactly as
`prefect deploy --all` would (same names, parameters, limits, pull steps, pool), except that
the schedules the server holds are left alone, and a deployment already registered from
the same prefect.yaml entry, settings and Cutline code (its ``version``) is not registered
again: what ops changed on it in the UI (default parameters, job variables, description,
tags) survives restarts. An upgrade of Cutline or an edit of prefect.yaml registers it
again from prefect.yaml, as `prefect deploy` would; its schedules are still kept.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from cutline.base.code_version import code_version
from cutline.base.settings import PROJECT_ROOT, get_settings

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments:` entries of prefect.yaml."""
    return list(yaml.safe_load(path.read_text(encoding="utf-8")).get("deployments") or [])


def deployment_names(path: Path = PREFECT_YAML) -> list[str]:
    """'flow-name/deployment' of every deployment, as the API names them."""
    names = []
    for spec in deployment_specs(path):
        module, func = spec["entrypoint"].rsplit(".", 1)
        source = (PROJECT_ROOT / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8")
        flow_name = _flow_name(source, func)
        names.append(f"{flow_name}/{spec['name']}")
    return names


def _flow_name(source: str, func: str) -> str:
    """The name= given in the @flow decorator of ``func`` (without importing the module)."""
    import ast

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == func:
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call):
                    for kw in deco.keywords:
                        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                            return str(kw.value.value)
            return func.replace("_", "-")
    raise ValueError(f"no flow function {func} in the entrypoint")


def seed_schedules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The schedules prefect.yaml declares for a deployment, each with a slug (its own, or
    ``prefect-yaml-N``) so that it is created once and then left to the server."""
    seeds = []
    for number, entry in enumerate(spec.get("schedules") or [], start=1):
        entry = dict(entry)
        slug = entry.pop("slug", None) or f"prefect-yaml-{number}"
        active = entry.pop("active", True)
        parameters = entry.pop("parameters", {}) or {}
        seeds.append({"slug": slug, "active": active, "parameters": parameters, "schedule": entry})
    return seeds


def keep_server_schedules(deployment: Any) -> Any:
    """Register ``deployment`` without touching the schedules the server holds for it.

    The stack registers its deployments again at every start (as `serve()` did). A
    RunnerDeployment made by `to_deployment` carries ``schedules=[]``, and Prefect's update
    endpoint answers an empty list by deleting every schedule that has no slug: the ones ops make in the UI (or with
    `prefect deployment schedule create`) have none, so they vanished at each `cutline up`,
    while slugged ones survived. Sending no schedules means "leave them": the server's are the
    truth; prefect.yaml's are only seeds (see ``plant_seed_schedules``). The server refuses
    ``schedules: null``, so the field is marked unset instead: Prefect sends only the fields
    set (pydantic's ``model_fields_set``), and a new deployment is still created without any.
    """
    deployment.model_fields_set.discard("schedules")
    return deployment


def plant_seed_schedules(path: Path = PREFECT_YAML) -> None:
    """Create the schedules prefect.yaml declares that the server does not have yet (by slug).

    One edited or paused in the UI keeps its changes; one deleted there stays deleted only
    until prefect.yaml is edited to drop it (it is created again at the next start).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    names = deployment_names(path)
    with get_client(sync_client=True) as client:
        for name, spec in zip(names, deployment_specs(path), strict=True):
            seeds = seed_schedules(spec)
            if not seeds:
                continue
            deployment = client.read_deployment_by_name(name)
            have = {schedule.slug for schedule in deployment.schedules}
            missing = [
                DeploymentScheduleCreate.model_validate(seed)
                for seed in seeds
                if seed["slug"] not in have
            ]
            if missing:
                client.create_deployment_schedules(deployment.id, missing)


def build_deployments(path: Path = PREFECT_YAML, pool: str = "") -> list[Any]:
    """RunnerDeployments for every entry of prefect.yaml (same names, parameters, limits),
    with module-path entrypoints (a worker imports each flow from the Cutline installed on
    its host, as `prefect deploy` registers them from prefect.yaml), each stamped with its
    `registration_version` for work pool ``pool``."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.flows import load_flow_from_entrypoint
    from prefect.types.entrypoint import EntrypointType

    steps = pull_steps(path)
    deployments = []
    for spec in deployment_specs(path):
        flow = load_flow_from_entrypoint(spec["entrypoint"])
        limit = spec.get("concurrency_limit")
        if isinstance(limit, dict):
            if spec["entrypoint"] == "flows.process_shoot.process_shoot":
                limit = {**limit, "limit": get_settings().max_concurrent_shoots}
            limit = ConcurrencyLimitConfig(**limit)
        options = {
            "name": spec["name"],
            "description": spec.get("description"),
            "tags": spec.get("tags"),
            "parameters": spec.get("parameters") or {},
            "enforce_parameter_schema": spec.get("enforce_parameter_schema", True),
            "concurrency_limit": limit,
        }
        deployments.append(
            flow.to_deployment(
                **options,
                # Given, so Prefect does not put the checkout's git commit in its place.
                version=registration_version(spec["entrypoint"], options, pool, steps),
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return [keep_server_schedules(deployment) for deployment in deployments]


def pull_steps(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `pull:` steps of prefect.yaml (none: the flows are imported from the installed
    Cutline)."""
    return list(yaml.safe_load(path.read_text(encoding="utf-8")).get("pull") or [])


def registration_version(
    entrypoint: str, options: dict[str, Any], pool: str, steps: list[dict[str, Any]]
) -> str:
    """The ``version`` a registration gives a deployment (shown in the UI): Cutline's code
    version (which fixes the flow's parameters) and a hash of what prefect.yaml and the
    settings register: its options, entrypoint, work pool and pull steps."""

    def plain(value: Any) -> Any:
        return value.model_dump(mode="json") if hasattr(value, "model_dump") else str(value)

    text = json.dumps(
        {**options, "entrypoint": entrypoint, "pool": pool, "pull": steps},
        sort_keys=True,
        default=plain,
    )
    return f"cutline {code_version()} spec {hashlib.sha256(text.encode()).hexdigest()[:10]}"


def register_on_pool(pool: str, path: Path = PREFECT_YAML) -> tuple[list[Any], list[str]]:
    """Register the deployments of prefect.yaml on work pool ``pool`` with prefect.yaml's
    pull steps (the shape `prefect deploy --all` gives them), skipping each one already
    registered so (same ``registration_version``: ops' UI edits survive), plant the seed
    schedules the server lacks; return every deployment's id and the names registered anew."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.exceptions import ObjectNotFound

    steps = pull_steps(path)
    ids, registered = [], []
    with get_client(sync_client=True) as client:
        for deployment in build_deployments(path, pool):
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                have = client.read_deployment_by_name(name)
            except ObjectNotFound:
                have = None
            if (
                have is not None
                and have.version == deployment.version
                and have.work_pool_name == pool
            ):
                ids.append(have.id)
                continue
            deployment_id = deployment.apply(work_pool_name=pool)
            # apply() sends no pull steps for a flow without storage: replace any an
            # earlier registration (or `prefect deploy` of an older prefect.yaml) left
            client.update_deployment(deployment_id, DeploymentUpdate(pull_steps=steps))
            ids.append(deployment_id)
            registered.append(name)
    plant_seed_schedules(path)
    return ids, registered
