"""One shoot run per job at a time.

Two runs of one job at once (a Retry clicked while a rerun is going, a schedule overlapping a
producer's run, two workers) would write the same job folder, ledger and DAM records and ask
for two sign-offs. Each run of a job therefore holds the job's slot, a Prefect global
concurrency limit of 1 named ``cutline-job-<JOB>``; a second run waits for it (saying which
run it waits for) and then runs as a rerun. The slot is held under a lease that the holder
renews: a run whose process is killed frees it within ``LEASE_SECONDS``.

A slot that no lease accounts for (its holder died with a Prefect server that kept leases in
memory) would never be freed: a run that finds the job's slot taken while no other run of the
job is going for ``UNHELD_SLOT_SECONDS`` gives that slot back and takes it, instead of
waiting ``CUTLINE_JOB_WAIT_MINUTES`` for nobody.

A studio runs thousands of jobs: a limit kept per job ever run would bury the model and DAM
limits on the UI's Concurrency page. A run that has given its slot back therefore deletes the
job's limit when no other run of the job is starting, running or being cancelled (a run
waiting for the slot is running, so its limit stays). A run starting just then may find the
limit gone as it asks for the slot: it creates the limit again and asks once more."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from uuid import UUID

from cutline.base.errors import ConfigError, CutlineError
from cutline.domain.items import job_key
from cutline.services.limits import upsert_limit

LEASE_SECONDS = 60.0
POLL_SECONDS = 15.0
# Longer than a dead holder's lease (LEASE_SECONDS) plus the server's repossessor cadence
# (15 s) with room to spare: a slot still taken after this, with no run of the job going,
# has no lease behind it.
UNHELD_SLOT_SECONDS = LEASE_SECONDS + 60.0
# States of a shoot run whose process may hold the job's slot.
HOLDING_STATES = ("RUNNING", "CANCELLING")
# States of a shoot run that may yet ask for the job's slot (its limit must stay).
ACTIVE_STATES = ("PENDING", *HOLDING_STATES)
SHOOT_FLOW = "process-shoot"


class JobBusyError(CutlineError):
    """Another run of the job held it for longer than this run could wait."""


def lock_name(job_id: str) -> str:
    """The global concurrency limit that stands for one job."""
    return f"cutline-job-{job_id}"


def other_runs_of_job(
    job_id: str, run_id: str | None, states: tuple[str, ...] = HOLDING_STATES
) -> list[str]:
    """Ids of the job's other shoot runs in ``states`` now (by default running or being
    cancelled: the runs that may hold the job's slot; the run name is the job id)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[SHOOT_FLOW])),
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[job_id]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))),
            ),
            limit=20,
        )
    return [str(run.id) for run in runs if str(run.id) != run_id]


def similar_jobs(job_id: str) -> list[str]:
    """Other job IDs with shoot runs on the server whose `job_key` is this one's: IDs that
    differ only in letter case or in '.', '_', '-' (SS26-0142, ss26-0142, SS26_0142)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
    )

    # The server matches names with ILIKE '%pattern%', where '_' stands for any one character.
    pattern = re.sub(r"[._-]", "_", job_id)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[SHOOT_FLOW])),
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=pattern)),
            limit=200,
        )
    key = job_key(job_id)
    return sorted({run.name for run in runs if run.name != job_id and job_key(run.name) == key})


def refuse_similar_jobs(job_id: str) -> None:
    """Refuse a job ID that only letter case or '.', '_', '-' tell apart from an existing
    job's: on a case-insensitive disk both would write one folder, and the UI would show
    their summaries as one."""
    others = similar_jobs(job_id)
    if others:
        raise ConfigError(
            f"Job ID {job_id!r} differs from the existing job {others[0]!r} only in letter case "
            "or in '.', '_', '-': their folders, summaries and links would be mixed up.",
            hint=f"To rerun that job use {others[0]!r} exactly; for a new job choose an ID that "
            "differs in a letter or digit.",
        )


@contextmanager
def one_run_per_job(
    job_id: str,
    run_id: str | None,
    wait_seconds: float,
    on_wait: Callable[[list[str]], None],
) -> Iterator[None]:
    """Hold the job's slot for the body; wait up to ``wait_seconds`` for another run of the
    job to finish first, calling ``on_wait`` with the runs it waits for every poll."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency.sync import concurrency

    name = lock_name(job_id)
    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(run_id)) if run_id else None
    deadline = time.monotonic() + wait_seconds
    with get_client(sync_client=True) as client:
        upsert_limit(client, name, 1)
    poll = 1.0  # the first look is short, so a waiting run says so at once
    unheld_since: float | None = None  # since when the slot is taken with no run going
    try:
        with ExitStack() as held:
            while True:
                try:
                    _enter_slot(
                        concurrency(
                            name,
                            occupy=1,
                            timeout_seconds=max(1.0, min(poll, deadline - time.monotonic())),
                            strict=True,
                            lease_duration=LEASE_SECONDS,
                            holder=holder,
                            raise_on_lease_renewal_failure=False,
                        ),
                        held,
                        name,
                    )
                    break
                except TimeoutError:
                    others = other_runs_of_job(job_id, run_id)
                    now = time.monotonic()
                    if others:
                        unheld_since = None
                    elif unheld_since is None:
                        unheld_since = now
                    elif now - unheld_since >= UNHELD_SLOT_SECONDS:
                        _give_back_unheld_slot(name, now - unheld_since)
                        unheld_since, poll = None, 1.0
                        continue
                    if now >= deadline:
                        raise JobBusyError(
                            f"Job {job_id} is still being run by flow run(s) "
                            f"{', '.join(others) or '(a run whose process stopped)'}; this run "
                            f"waited {wait_seconds / 60:.0f} min for it.",
                            hint="Let that run finish (or cancel it in the UI), then rerun the job; "
                            "CUTLINE_JOB_WAIT_MINUTES sets how long a run waits.",
                        ) from None
                    on_wait(others)
                    poll = POLL_SECONDS
            yield
    finally:  # after a failed shoot too: its slot is given back by then
        _remove_limit_when_idle(job_id, run_id)


def _enter_slot(slot, held: ExitStack, name: str) -> None:
    """Take the slot into ``held``; when the job's limit was deleted by a run that just ended
    (see the module docstring), create it again and take the slot from that."""
    from prefect.client.orchestration import get_client

    try:
        held.enter_context(slot)
    except Exception as exc:
        # Prefect raises ConcurrencySlotAcquisitionError (not exported: a private module's
        # class) saying the limit "must be created before acquiring slots".
        if "must be created" not in str(exc):
            raise
        with get_client(sync_client=True) as client:
            upsert_limit(client, name, 1)
        raise TimeoutError(f"{name} was deleted as this run asked for it") from exc


def _remove_limit_when_idle(job_id: str, run_id: str | None) -> None:
    """Delete the job's limit once this run has given its slot back, unless another run of the
    job may still ask for it. A failure only leaves the limit (the next run of the job
    reuses it)."""
    import logging

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = lock_name(job_id)
    try:
        if other_runs_of_job(job_id, run_id, ACTIVE_STATES):
            return
        with get_client(sync_client=True) as client:
            if client.read_global_concurrency_limit_by_name(name).active_slots:
                return  # taken again since (a run starting this very moment)
            client.delete_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return
    except Exception as exc:  # housekeeping never fails the shoot
        logging.getLogger("cutline.job_lock").warning("Could not delete %s: %s", name, exc)


def _give_back_unheld_slot(name: str, unheld_for: float) -> None:
    """Free the job slot ``name`` that no run holds (see the module docstring)."""
    import logging

    from prefect.client.orchestration import get_client
    from prefect.logging import get_run_logger

    try:
        logger: logging.Logger | logging.LoggerAdapter = get_run_logger()
    except Exception:  # not in a run: the process's own log
        logger = logging.getLogger("cutline.job_lock")
    logger.warning(
        "%s was taken for %.0f s with no run of the job going (its holder stopped with the "
        "Prefect server); giving the slot back",
        name,
        unheld_for,
    )
    with get_client(sync_client=True) as client:
        client.release_concurrency_slots([name], 1, occupancy_seconds=unheld_for)
