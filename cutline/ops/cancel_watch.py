"""The worker process stops its own runs that were asked to cancel, when Prefect's runner no
longer does.

Prefect's runner watches for Cancelling runs over the events websocket and falls back to
polling the API while the websocket is down; when a few polls in a row fail (a Prefect server
restarting for ten seconds is enough) it stops watching for good ("flow run cancellation will
fail"). Every later Cancel of a run the worker process started (Ctrl-C on `cutline run`, Cancel
in the UI) then left the run working, and the server, after its cancelling timeout, called it
Cancelled while its shoot went on to the end.

`start_cancel_watch` looks every few seconds at the runs this process started (its child
processes, which Prefect gives their flow-run id in ``PREFECT__FLOW_RUN_ID``). A run Cancelling
for ``GRACE_SECONDS`` (the runner, when it watches, is done by then) has its process sent
SIGTERM, and SIGKILL after ``KILL_GRACE_SECONDS``; once its process is gone, the run is marked
Cancelled (its engine, not told of the cancel, reports the signal as a crash). Linux only (it
reads /proc), as the stack is.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

logger = logging.getLogger("cutline.cancel_watch")

GRACE_SECONDS = 10.0
KILL_GRACE_SECONDS = 30.0  # as Prefect's runner allows a cancelled run's process
RUN_ID_VARIABLE = b"PREFECT__FLOW_RUN_ID="


def child_runs(parent: int | None = None) -> dict[str, int]:
    """Flow-run id -> pid of each live child process of ``parent`` (this process) that runs
    a flow run."""
    parent = os.getpid() if parent is None else parent
    runs: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z" or int(fields[1]) != parent:
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        for entry in environ:
            if entry.startswith(RUN_ID_VARIABLE):
                runs[entry[len(RUN_ID_VARIABLE) :].decode()] = int(stat.parent.name)
    return runs


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def _signal(pid: int, signum: int) -> None:
    """Signal a run's process, and its process group when it leads one of its own (a runner
    may start it in the worker's group, which must not be signalled)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


@dataclass
class _Stopping:
    """A Cancelling run of ours: its process, and when each step was taken."""

    pid: int
    seen: float
    terminated: float | None = None
    killed: bool = False


class CancelWatch:
    """One look at a time (see the module docstring); ``look`` is called periodically."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.stopping: dict[str, _Stopping] = {}

    def look(self) -> None:
        """Act on the Cancelling runs among this process's children, and mark the ones whose
        process has gone Cancelled."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )

        children = child_runs()
        watched = set(children) | set(self.stopping)
        if not watched:
            return
        with get_client(sync_client=True) as client:
            cancelling = {
                str(run.id)
                for run in client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        id=FlowRunFilterId(any_=[UUID(r) for r in watched]),
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["CANCELLING"])),
                    ),
                    limit=len(watched),
                )
            }
            now = self.clock()
            for run_id in list(self.stopping):
                if run_id in cancelling:
                    continue
                # Cancelled (by the runner), or ended otherwise after a SIGTERM from here.
                if self.stopping.pop(run_id).terminated is not None:
                    self._cancelled_not_crashed(client, run_id)
            for run_id in cancelling:
                entry = self.stopping.setdefault(run_id, _Stopping(children.get(run_id, 0), now))
                if entry.pid and _alive(entry.pid):
                    self._stop(run_id, entry, now)
                elif now - entry.seen >= GRACE_SECONDS:
                    self._mark_cancelled(client, run_id)
                    del self.stopping[run_id]

    def _stop(self, run_id: str, entry: _Stopping, now: float) -> None:
        if now - entry.seen < GRACE_SECONDS:
            return
        if entry.terminated is None:
            logger.warning(
                "Run %s has been Cancelling for %.0f s and its process %d still runs: "
                "stopping it (Prefect's runner no longer watches for cancellations)",
                run_id,
                now - entry.seen,
                entry.pid,
            )
            _signal(entry.pid, signal.SIGTERM)
            entry.terminated = now
            _settle_when_gone(run_id, entry.pid)
        elif not entry.killed and now - entry.terminated >= KILL_GRACE_SECONDS:
            _signal(entry.pid, signal.SIGKILL)
            entry.killed = True

    @staticmethod
    def _cancelled_not_crashed(client, run_id: str) -> None:
        """A run stopped here ends Cancelled: its engine, told nothing of the cancel (only
        Prefect's runner can tell it), reports the SIGTERM as a crash."""
        from prefect.states import Cancelled

        run = client.read_flow_run(UUID(run_id))
        if run.state is not None and run.state.is_crashed():
            client.set_flow_run_state(
                UUID(run_id),
                Cancelled(message="Cancelled: its process was stopped by the stack"),
                force=True,
            )
            logger.warning("Run %s: stopped as asked; marked Cancelled", run_id)

    @staticmethod
    def _mark_cancelled(client, run_id: str) -> None:
        from prefect.states import Cancelled

        client.set_flow_run_state(
            UUID(run_id), Cancelled(message="Cancelled: its process was stopped by the stack")
        )
        logger.warning("Run %s: its process has stopped; marked Cancelled", run_id)


def _settle_when_gone(run_id: str, pid: int) -> None:
    """As soon as a stopped run's process has gone, correct the Crashed its engine reported
    to Cancelled (the next periodic look would too, seconds later: the UI and `cutline run`
    should not show a crash in between)."""
    from prefect.client.orchestration import get_client

    def settle() -> None:
        deadline = time.monotonic() + KILL_GRACE_SECONDS + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        try:
            with get_client(sync_client=True) as client:
                for _ in range(25):  # the engine's last state may still be on its way
                    CancelWatch._cancelled_not_crashed(client, run_id)
                    state = client.read_flow_run(UUID(run_id)).state
                    if state is not None and state.is_cancelled():
                        return
                    time.sleep(0.2)
        except Exception as exc:  # the periodic look corrects it later
            logger.warning("Run %s: could not mark it Cancelled yet (%s)", run_id, exc)

    context = contextvars.copy_context()
    threading.Thread(
        target=context.run, args=(settle,), daemon=True, name=f"cutline-settle-{run_id[:8]}"
    ).start()


def start_cancel_watch(every: float) -> threading.Event:
    """Run `CancelWatch.look` every ``every`` seconds in a background thread; set the
    returned event to stop it. A failed look (server away) is logged and the next one runs."""
    stop = threading.Event()
    watch = CancelWatch()

    def loop() -> None:
        failing = False
        while not stop.is_set():
            # Short sleeps, not Event.wait(timeout): a timed wait can hang under libfaketime.
            due = time.monotonic() + every
            while time.monotonic() < due and not stop.is_set():
                time.sleep(min(0.5, every))
            try:
                watch.look()
            except Exception as exc:
                if not failing:  # once per outage, not every few seconds
                    logger.warning("Looking for cancelled runs failed (%s); trying again", exc)
                failing = True
            else:
                failing = False

    context = contextvars.copy_context()  # the caller's Prefect settings (which API)
    threading.Thread(
        target=context.run, args=(loop,), daemon=True, name="cutline-cancel-watch"
    ).start()
    return stop
