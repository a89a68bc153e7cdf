"""Schedules and deployment edits ops make in the Prefect UI survive `cutline down && cutline
up` (issue 28); an edited prefect.yaml is registered again, keeping the schedules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cutline.base.code_version import code_version
from cutline.ops.deployments import seed_schedules
from tests.ports import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _cutline(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cutline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.browser
def test_a_schedule_made_in_the_ui_survives_a_restart_of_the_stack(
    tmp_path, browser_page, artifacts_dir
):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        "CUTLINE_DATA_ROOT": str(tmp_path / "data"),
        "CUTLINE_SERVER_PORT": str(port),
        "CUTLINE_SHARE_PORT": str(free_port()),
    }
    api = f"http://127.0.0.1:{port}/api"
    overrides = {"shoot": "/mnt/shoots/SS26-0142", "job_id": "SS26-0142"}
    _cutline(env, "up")
    try:
        with httpx.Client(base_url=api, timeout=30) as http:
            shoot = http.get("/deployments/name/process-shoot/shoot").json()
            [made] = _schedule_from_the_ui(
                browser_page, http, port, shoot["id"], overrides, artifacts_dir
            )
            # The UI sends no slug: the API-made schedule that survived in the bug report had
            # one, and Prefect's update deletes every slugless schedule when sent an empty list.
            assert made["slug"] is None
            # Ops also edit the deployment (what the UI's Edit page sends): a default output
            # root and job variables. The restart registers nothing again (same prefect.yaml,
            # settings and code: the deployment's version), so these survive too.
            edit = {
                "parameters": {"output_root": "/mnt/renditions"},
                "job_variables": {"env": {"TZ": "Europe/Berlin"}},
            }
            edited = http.patch(f"/deployments/{shoot['id']}", json=edit)
            if edited.status_code == 404:  # seen once from Prefect 3.9.1 on SQLite, unexplained
                edited = http.patch(f"/deployments/{shoot['id']}", json=edit)
            assert edited.status_code == 204, (edited.status_code, edited.text)
            registered_as = shoot["version"]
            assert registered_as.startswith(f"cutline {code_version()} spec "), registered_as

            _cutline(env, "down")
            _cutline(env, "up")

            after = http.get(f"/deployments/{shoot['id']}").json()
            seeded = _plant_twice(api, tmp_path)
            upgraded = _register_changed_yaml(api, tmp_path, after["work_pool_name"])
            after_upgrade = http.get(f"/deployments/{shoot['id']}").json()

            # And it still fires: the restarted server plans its runs, with the UI's overrides.
            def planned():
                found = http.post(
                    "/flow_runs/filter",
                    json={
                        "flow_runs": {
                            "deployment_id": {"any_": [shoot["id"]]},
                            "state": {"type": {"any_": ["SCHEDULED"]}},
                        }
                    },
                ).json()
                return found or None

            runs = wait_until(planned, "a run planned by the UI's schedule", 120, 2)
    finally:
        _cutline(env, "down")
    assert [(s["slug"], s["schedule"]["cron"]) for s in seeded] == [("weekly-eval", "0 3 * * 1")]
    assert after["id"] == shoot["id"]
    assert after["version"] == registered_as
    assert (
        after["parameters"] == edit["parameters"]
        and after["job_variables"] == edit["job_variables"]
    )
    # An edited prefect.yaml (or another Cutline) registers it again from prefect.yaml, as
    # `prefect deploy` would, and still keeps the server's schedules.
    assert upgraded == ["process-shoot/shoot"]
    assert after_upgrade["description"].startswith("Edited:")
    assert after_upgrade["parameters"] == {} and after_upgrade["version"] != registered_as
    assert [s["id"] for s in after_upgrade["schedules"]] == [made["id"]]
    [schedule] = after["schedules"]
    assert schedule["id"] == made["id"]
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["active"] is True
    assert schedule["parameters"] == made["parameters"]
    # The UI sent its JSON input wrapped ({"__prefect_kind": "json", "value": "..."}); the
    # stack's server stored the values it stands for (PrefectHQ/prefect#18701).
    assert schedule["parameters"] == overrides
    for run in runs:  # the run gets the shoot and job the UI gave, not the form's wrapper
        assert {k: run["parameters"].get(k) for k in overrides} == overrides, run["parameters"]
        assert "T02:00:00" in run["expected_start_time"], run["expected_start_time"]


def _schedule_from_the_ui(
    page, http, port: int, deployment_id: str, overrides: dict, artifacts: Path
) -> list:
    """The deployment's schedules once one made in the UI is on it. Under a loaded CI machine
    the UI's save was twice not on the deployment after its dialog closed (never when run
    alone): as a person would, Save once more, keeping a screenshot of what the UI showed."""
    for attempt in (1, 2):
        _add_schedule_in_the_ui(page, port, deployment_id, "0 2 * * *", overrides)
        try:
            return wait_until(
                lambda: http.get(f"/deployments/{deployment_id}").json()["schedules"] or None,
                "the UI's schedule on the deployment",
                20,
                0.5,
            )
        except AssertionError:
            page.screenshot(path=str(artifacts / f"schedule-not-saved-{attempt}.png"))
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _add_schedule_in_the_ui(page, port: int, deployment_id: str, cron: str, overrides: dict):
    """Deployments -> shoot -> + Schedule -> Cron, parameter overrides as JSON -> Save."""
    page.goto(f"http://127.0.0.1:{port}/deployments/deployment/{deployment_id}")
    page.get_by_role("button", name="Schedule", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Cron", exact=True).click()
    value = dialog.locator("input").nth(2)  # slug, active, cron value, day-or
    assert value.input_value() == "* * * * *"
    value.fill(cron)
    dialog.locator(".p-icon-button-menu button").click()  # Parameter Overrides' menu
    page.get_by_text("Use JSON input").first.click()
    dialog.locator("textarea, [contenteditable=true]").first.click()
    page.keyboard.press("Control+A")
    # Inserted as one paste: typed key by key, the editor's own bracket and quote closing
    # could race the keystrokes.
    page.keyboard.insert_text(json.dumps(overrides))
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")


def _register_changed_yaml(api: str, tmp_path, pool: str) -> list[str]:
    """Register prefect.yaml with the shoot deployment's description edited; the names
    registered anew."""
    import yaml
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline.ops.deployments import PREFECT_YAML, register_on_pool

    declared = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    [spec] = [s for s in declared["deployments"] if s["name"] == "shoot"]
    spec["description"] = "Edited: " + spec["description"]
    edited = tmp_path / "edited-prefect.yaml"
    edited.write_text(yaml.safe_dump(declared), encoding="utf-8")

    def register() -> list[str]:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            return register_on_pool(pool, edited)[1]

    # In a thread of its own, as in the worker: Playwright's event loop runs in this one, and
    # Prefect's to_deployment() would hand back a coroutine inside it.
    with ThreadPoolExecutor(1) as pool_thread:
        return pool_thread.submit(register).result()


def _plant_twice(api: str, tmp_path) -> list[dict]:
    """Plant a prefect.yaml seed schedule on the eval deployment twice; its schedules after."""
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline.ops.deployments import PREFECT_YAML, deployment_specs, plant_seed_schedules

    [spec] = [s for s in deployment_specs(PREFECT_YAML) if s["name"] == "eval"]
    spec["schedules"] = [{"cron": "0 3 * * 1", "timezone": "UTC", "slug": "weekly-eval"}]
    seeded_yaml = tmp_path / "prefect.yaml"
    seeded_yaml.write_text(yaml.safe_dump({"deployments": [spec]}), encoding="utf-8")
    with temporary_settings(updates={PREFECT_API_URL: api}):
        plant_seed_schedules(seeded_yaml)
        plant_seed_schedules(seeded_yaml)  # a restart: the seed exists, nothing is added
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("evaluate-cutouts/eval")
    return [schedule.model_dump(mode="json") for schedule in deployment.schedules]


def test_prefect_yaml_schedules_are_seeds_with_slugs():
    spec = {
        "schedules": [
            {"cron": "0 3 * * 1", "timezone": "UTC", "parameters": {"data": "/ref"}},
            {"interval": 86400, "slug": "daily", "active": False},
        ]
    }
    assert seed_schedules(spec) == [
        {
            "slug": "prefect-yaml-1",
            "active": True,
            "parameters": {"data": "/ref"},
            "schedule": {"cron": "0 3 * * 1", "timezone": "UTC"},
        },
        {"slug": "daily", "active": False, "parameters": {}, "schedule": {"interval": 86400}},
    ]
    assert seed_schedules({}) == []


def test_the_uis_wrapped_json_parameters_are_unwrapped_as_prefect_does_for_a_custom_run():
    from cutline.ops.schedule_requests import _hydrate_body
    from cutline.services.schedule_parameters import hydrated

    wrapped = {"__prefect_kind": "json", "value": json.dumps({"shoot": "/s", "job_id": "J-1"})}
    assert hydrated(wrapped) == {"shoot": "/s", "job_id": "J-1"}
    nested = {"shoot": {"__prefect_kind": "json", "value": '"/t"'}, "job_id": "J-2"}
    assert hydrated(nested) == {"shoot": "/t", "job_id": "J-2"}
    plain = {"shoot": "/u", "job_id": "J-3"}
    assert hydrated(plain) is plain
    broken = {"__prefect_kind": "json", "value": "{not json"}
    assert hydrated(broken) == broken  # left to Prefect's own message, never guessed at
    body = json.dumps([{"schedule": {"cron": "0 2 * * *"}, "parameters": wrapped}]).encode()
    assert json.loads(_hydrate_body(body))[0]["parameters"] == {"shoot": "/s", "job_id": "J-1"}
    assert _hydrate_body(b"not json") == b"not json"


def test_runs_a_schedule_planned_with_wrapped_parameters_are_mended(prefect_server):
    """Against Prefect's own server (no Cutline in front of it) a UI schedule's runs are
    planned with the wrapper; the stack's housekeeping (and `cutline review escalate`) mends
    them before they start."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from cutline.services.schedule_parameters import repair_schedules

    wanted = {"shoot": "/mnt/shoots/NIGHT-1", "job_id": "NIGHT-1"}
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("process-shoot/shoot")
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters=wanted,
            state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(days=30)),
        )
        wrapped = {"__prefect_kind": "json", "value": json.dumps(wanted)}
        client.update_flow_run(run.id, parameters=wrapped)  # as Prefect's scheduler plans it
        assert client.read_flow_run(run.id).parameters == wrapped
        try:
            assert any(run.name in line for line in repair_schedules())
            assert client.read_flow_run(run.id).parameters == wanted
        finally:
            client.delete_flow_run(run.id)
