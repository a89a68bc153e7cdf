"""What running a shoot's batches on workers costs, on one host, against the in-process shoot.

    python -m benchmarks.worker_mode [--count 40] [--size 640x480] [--runs 3] [--postgres]

The same shoot runs three ways (CUTLINE_BATCH_RUNNER), rounds alternating which goes first:

- `in-process`: the shoot run's own process runs every batch's stage tasks (this process);
- `flow-runs`: one `process-batch/batch` flow run per batch, run by a process work pool worker
  (`prefect worker start --pool cutline --limit 2`), which starts a Python process per run:
  Prefect imported and the model loaded for every batch;
- `task-workers`: one background task run per batch, run by one long-lived `cutline
  task-worker --limit 2` (Prefect and the model loaded once, before the rounds).

Each round counts, from the shoot's start until it has ended and no batch process is left, the
CPU seconds of this process (the shoot), the Prefect server and the mode's worker with every
process it started (children included, reaped or alive), the processes started (the watched
trees sampled every 50 ms: one shorter than that can be missed; the batch processes are
counted exactly, from the batch records) and the model loads. Both workers are warmed up first (one
shoot each) and run during every round; a worker's CPU counts only in its own mode. Figures per
image and per 1,000 images; medians over the rounds. Target (issue 28): task-worker mode within
1.15x of the in-process shoot's CPU per image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import (
    bench_settings,
    live_children,
    median,
    tree_cpu_seconds,
    write_jpegs,
    write_manifest,
    write_result,
)

MODES = ("in-process", "flow-runs", "task-workers")


class ProcessCounter:
    """Processes started under the watched roots while it runs (sampled every 50 ms through
    /proc/<pid>/task/<tid>/children); its own CPU is kept apart from the measurement."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.seen: dict[tuple[int, str], str] = {}  # (pid, start time) -> its command line
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._before = self._snapshot()

    def _snapshot(self) -> dict[tuple[int, str], str]:
        found: dict[tuple[int, str], str] = {}
        todo = list(self.roots)
        while todo:
            pid = todo.pop()
            try:
                start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, IndexError):
                continue
            found[(pid, start)] = command.decode(errors="replace").strip()[:100]
        return found

    def _run(self) -> None:
        started = time.thread_time()
        while not self._stop.wait(0.05):
            for key, command in self._snapshot().items():
                if command or key not in self.seen:  # an ended process reads as ''
                    self.seen[key] = command
        self.cpu = time.thread_time() - started

    def __enter__(self) -> ProcessCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def started(self) -> list[str]:
        """The command lines of the processes that were not there when counting began."""
        return [command for key, command in self.seen.items() if key not in self._before]


def _run(env: dict[str, str], *args: str) -> None:
    from cutline.base.settings import PROJECT_ROOT

    subprocess.run(args, env=env, cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=300)


def _start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    from cutline.base.settings import PROJECT_ROOT

    return subprocess.Popen(
        args,
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _shoot(mode: str, shoot: Path, out: Path, job_id: str) -> dict:
    """One shoot with CUTLINE_BATCH_RUNNER=mode, in this process."""
    from cutline.base.settings import reload_settings
    from flows.process_shoot import process_shoot

    os.environ["CUTLINE_BATCH_RUNNER"] = mode
    reload_settings()
    summary = process_shoot(shoot=str(shoot), job_id=job_id, output_root=str(out))
    return summary.lanes


def _batch_workers(job: Path) -> list[dict]:
    return [
        json.loads(path.read_text()).get("worker") or {}
        for path in sorted((job / "batches").glob("*.json"))
    ]


def main() -> None:
    """Run the comparison and write results/worker-mode-<size>.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cutline-worker-mode-"))
    settings = bench_settings(work, "worker_mode", "4296", args.postgres)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cutline.imaging.segmenter import loaded_session_count
    from cutline.ops import stack
    from cutline.ops.task_worker import set_up_storage
    from tasks.ingest import balanced_batch_size

    shoot = work / "shoot"
    paths = write_jpegs(shoot, args.count, (width, height))
    write_manifest(shoot, paths, 0.0)
    current = stack.up(settings, worker=False)
    os.environ["PREFECT_API_URL"] = current.api_url
    env = {
        **os.environ,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    workers: dict[str, subprocess.Popen] = {}
    rows: list[dict] = []
    try:
        with temporary_settings(updates={PREFECT_API_URL: current.api_url}):
            _run(
                env,
                sys.executable,
                "-m",
                "prefect",
                "work-pool",
                "create",
                "cutline",
                "--type",
                "process",
            )
            _run(env, sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all")
            set_up_storage(str(work / "task-storage"), settings)
            workers["flow-runs"] = _start(
                env, work / "process-worker.log", sys.executable, "-m", "prefect", "worker",
                "start", "--pool", "cutline", "--limit", str(settings.workers),
            )  # fmt: skip
            workers["task-workers"] = _start(
                env, work / "task-worker.log", sys.executable, "-m", "cutline", "task-worker",
                "--limit", str(settings.workers),
            )  # fmt: skip
            for mode in MODES:  # imports, model, caches, both workers' first model load
                _shoot(mode, shoot, work / "warm", f"WARM-{mode}")
            sessions_seen: dict[str, int] = {
                w["task_worker"]: w["model_sessions"]
                for w in _batch_workers(work / "warm" / "WARM-task-workers")
            }
            server = [current.pid] if current.pid else []
            for round_ in range(args.runs):
                order = MODES[round_ % 3 :] + MODES[: round_ % 3]
                for mode in order:
                    job_id = f"WM-{mode}-{round_}"
                    worker = workers.get(mode)
                    watched = [*server, *([worker.pid] if worker else [])]
                    loads_here = loaded_session_count()
                    with ProcessCounter([os.getpid(), *watched]) as counter:
                        cpu_self, cpu_trees = time.process_time(), tree_cpu_seconds_sum(watched)
                        started = time.perf_counter()
                        lanes = _shoot(mode, shoot, work / "out", job_id)
                        while worker is not None and live_children(worker.pid):
                            time.sleep(0.05)  # until the last batch process has ended
                        wall = time.perf_counter() - started
                        cpu_trees = tree_cpu_seconds_sum(watched) - cpu_trees
                        cpu_self = time.process_time() - cpu_self
                    cpu_self -= counter.cpu  # the sampler's own CPU is not the shoot's
                    commands = counter.started()
                    batches = _batch_workers(work / "out" / job_id)
                    if mode == "in-process":
                        loads = loaded_session_count() - loads_here
                        batch_processes = 0
                    elif mode == "flow-runs":  # every batch's flow-run process loads the model
                        batch_processes = len({b["pid"] for b in batches})
                        loads = batch_processes
                    else:
                        after: dict[str, int] = {}
                        for b in batches:
                            after[b["task_worker"]] = max(
                                after.get(b["task_worker"], 0), b["model_sessions"]
                            )
                        loads = sum(n - sessions_seen.get(w, 0) for w, n in after.items())
                        sessions_seen.update(after)
                        batch_processes = 0
                    cpu = cpu_self + cpu_trees
                    rows.append(
                        {
                            "round": round_,
                            "mode": mode,
                            "wall_s": round(wall, 2),
                            "cpu_s": round(cpu, 2),
                            "cpu_shoot_process_s": round(cpu_self, 2),
                            "cpu_server_and_worker_s": round(cpu_trees, 2),
                            "cpu_s_per_image": round(cpu / args.count, 4),
                            "batches": len(batches),
                            "processes_started": len(commands),
                            "batch_processes": batch_processes,
                            "model_loads": loads,
                            "commands_started": sorted(set(commands)),
                            "lanes": lanes,
                            "load_1min": round(os.getloadavg()[0], 2),
                        }
                    )
                    print(rows[-1], flush=True)
                    shutil.rmtree(work / "out" / job_id, ignore_errors=True)
    finally:
        for process in workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in workers.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        stack.down(settings)
    _report(
        args, rows, settings, balanced_batch_size(args.count, settings.batch_size, settings.workers)
    )
    shutil.rmtree(work, ignore_errors=True)


def tree_cpu_seconds_sum(pids: list[int]) -> float:
    """CPU seconds of the process trees of ``pids`` (children included, reaped or alive)."""
    return sum(tree_cpu_seconds(pid) for pid in pids)


def _report(args, rows: list[dict], settings, batch_size: int) -> None:
    per_1000 = 1000 / args.count

    def med(mode: str, key: str) -> float:
        return median([r[key] for r in rows if r["mode"] == mode])

    summary = {
        mode: {
            "cpu_s_per_image": round(med(mode, "cpu_s_per_image"), 4),
            "wall_s": round(med(mode, "wall_s"), 2),
            "processes_per_1000_images": round(med(mode, "processes_started") * per_1000, 1),
            "batch_processes_per_1000_images": round(med(mode, "batch_processes") * per_1000, 1),
            "model_loads_per_1000_images": round(med(mode, "model_loads") * per_1000, 1),
            "batches": med(mode, "batches"),
        }
        for mode in MODES
    }
    base = summary["in-process"]["cpu_s_per_image"]
    for mode in MODES:
        summary[mode]["cpu_ratio_to_in_process"] = round(summary[mode]["cpu_s_per_image"] / base, 3)
        batches = summary[mode]["batches"] or 1
        summary[mode]["extra_cpu_s_per_batch"] = round(
            (summary[mode]["cpu_s_per_image"] - base) * args.count / batches, 3
        )
    data = {
        "count": args.count,
        "size": args.size,
        "postgres": args.postgres,
        "workers": settings.workers,
        "batch_size": batch_size,
        "rounds": rows,
        "summary": summary,
    }
    lines = [
        f"# Batches on workers vs the in-process shoot, {args.count} x {args.size}",
        "",
        f"One host, {args.runs} alternating rounds after a warm-up; server on "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}; {settings.workers} batches at once in "
        f"every mode, batches of {batch_size}. CPU: the shoot's process, the server and the "
        "mode's worker with its children, until no batch process is left.",
        "",
        "| mode | CPU s / image | x in-process | extra CPU s / batch | wall s | processes / 1,000 "
        "images (batch processes) | model loads / 1,000 images |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {mode} | {s['cpu_s_per_image']} | {s['cpu_ratio_to_in_process']} "
            f"| {s['extra_cpu_s_per_batch']} | {s['wall_s']} | {s['processes_per_1000_images']} "
            f"({s['batch_processes_per_1000_images']}) | {s['model_loads_per_1000_images']} |"
            for mode, s in summary.items()
        ],
        "",
        "| round | mode | wall s | CPU s (shoot process + server/worker) | processes (batch) "
        "| model loads | load (1 min) |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {r['round']} | {r['mode']} | {r['wall_s']} | {r['cpu_s']} "
            f"({r['cpu_shoot_process_s']} + {r['cpu_server_and_worker_s']}) "
            f"| {r['processes_started']} ({r['batch_processes']}) | {r['model_loads']} "
            f"| {r['load_1min']} |"
            for r in rows
        ],
    ]
    name = f"worker-mode-{args.size}"
    print(write_result(name, data, "\n".join(lines)).read_text())


if __name__ == "__main__":
    main()
