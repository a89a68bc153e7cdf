"""Stand-ins for separate hosts in the concurrency tests: each is a process of its own, with its
own HOME and data root (so nothing host-local is shared but the job folder or catalog itself),
that runs one step per round the moment the test says go, so two hosts' steps really race.

    python -m tests.host_race PLAN.json

PLAN: {"name": ..., "sync": folder, "warm": uri, "steps": [step, ...]}; before each step the
host touches <sync>/<round>.<name>.ready, waits for <sync>/<round>.go, runs the step and writes
<sync>/<round>.<name>.done ("ok" or the traceback).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent


def review_item(index: int, **changes: Any):
    """Image ``index`` of the race jobs, waiting in the review lane."""
    from cutline.domain.items import ImageItem
    from rules.engine import Lane

    item = ImageItem(
        index=index,
        source=f"/shoot/{index}.jpg",
        source_name=f"{index}.jpg",
        image_id=f"img-{index}",
        sha256=f"{index:064d}",
        sku=f"SKU-{index}",
        lane=Lane.REVIEW,
        reasons="glassware",
        review_state="queued",
    )
    return item.model_copy(update=changes)


def race_asset(job_id: str, name: str, **changes: Any) -> dict[str, Any]:
    """An asset submission (as JSON data) of the race catalogs."""
    return {
        "job_id": job_id,
        "sku": f"SKU-{name}",
        "source": f"/shoot/{name}.jpg",
        "source_name": f"{name}.jpg",
        "content_hash": (name.encode().hex() * 64)[:64],
        "approval_state": "auto-approved",
        "decided_by": "cutline-auto",
        "renditions": {"png": f"/out/{job_id}/png/{name}.png"},
        **changes,
    }


def _run(step: dict[str, Any]) -> None:
    from cutline.domain.items import JobLayout
    from cutline.records.ledger import record_review_outcome, write_ledger

    action = step["action"]
    if action == "decide":
        item = review_item(
            step["index"], review_state="approved", reviewed_by=step["by"], dam_id=step["dam_id"]
        )
        record_review_outcome(JobLayout(step["job"]), item)
    elif action == "write_ledger":  # the shoot (a rerun) writing its rows
        items = [review_item(i, campaign=step["campaign"]) for i in range(step["count"])]
        write_ledger(items, JobLayout(step["job"]))
    else:
        from dam_adapters import ApprovalState, AssetSubmission
        from dam_adapters.object_store import ObjectStoreCatalog

        catalog = ObjectStoreCatalog(step["catalog"])
        if action == "register":
            catalog.register(AssetSubmission(**step["asset"]))
        elif action == "approve":
            catalog.update_approval(
                step["dam_id"], ApprovalState(step["state"]), by=step["by"], note=step["note"]
            )
        else:
            raise ValueError(f"unknown step {action!r}")


def _wait_for(path: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():  # a tight poll: both hosts must start within a fraction of a ms
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path} after {timeout:.0f} s")
        time.sleep(0.0002)


def main(plan_file: str) -> None:
    plan = json.loads(Path(plan_file).read_text())
    sync, name = Path(plan["sync"]), plan["name"]
    from cutline.base import storage
    from cutline.records import ledger  # noqa: F401 - imported before the race, not in it
    from dam_adapters import object_store  # noqa: F401

    storage.exists(plan["warm"])  # the storage client and its connection, before the race
    for number, step in enumerate(plan["steps"]):
        (sync / f"{number}.{name}.ready").touch()
        _wait_for(sync / f"{number}.go")
        try:
            _run(step)
            outcome = "ok"
        except Exception:
            outcome = traceback.format_exc()
        done = sync / f"{number}.{name}.done"
        done.with_suffix(".part").write_text(outcome)
        done.with_suffix(".part").rename(done)


class Hosts:
    """Host processes started from the test, and the rounds they run together."""

    def __init__(self, root: Path, warm: str, steps: dict[str, list[dict[str, Any]]]) -> None:
        self.sync = root / "sync"
        self.sync.mkdir(parents=True)
        self.names = list(steps)
        self.processes: list[subprocess.Popen[bytes]] = []
        for name, plan_steps in steps.items():
            home = root / f"host-{name}"
            (home / "home").mkdir(parents=True)
            plan = home / "plan.json"
            plan.write_text(
                json.dumps(
                    {"name": name, "sync": str(self.sync), "warm": warm, "steps": plan_steps}
                )
            )
            env = dict(os.environ, HOME=str(home / "home"), CUTLINE_DATA_ROOT=str(home / "data"))
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.host_race", str(plan)],
                    cwd=REPO,
                    env=env,
                    stdout=(home / "out.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )

    def _all_exist(self, paths: list[Path]) -> bool:
        for name, process in zip(self.names, self.processes, strict=True):
            if process.poll() not in (None, 0):
                log = (self.sync.parent / f"host-{name}" / "out.log").read_text()
                raise AssertionError(f"host {name} exited with {process.returncode}:\n{log}")
        return all(p.exists() for p in paths)

    def round(self, number: int) -> None:
        """Release every host's step ``number`` at once; fail with a host's error."""
        ready = [self.sync / f"{number}.{n}.ready" for n in self.names]
        wait_until(lambda: self._all_exist(ready), f"hosts ready for round {number}", 120, 0.05)
        (self.sync / f"{number}.go").touch()
        done = [self.sync / f"{number}.{n}.done" for n in self.names]
        wait_until(lambda: self._all_exist(done), f"hosts done with round {number}", 120, 0.05)
        errors = {n: p.read_text() for n, p in zip(self.names, done, strict=True)}
        errors = {n: text for n, text in errors.items() if text != "ok"}
        assert not errors, f"round {number}: {errors}"

    def close(self) -> None:
        """Wait for the hosts to exit (they do after their last step), or stop them."""
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            for process in self.processes:
                process.kill()
        self.close()


if __name__ == "__main__":
    main(sys.argv[1])
