"""The review queue as retouchers and producers see it: waiting review runs, by deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from cutline.base.settings import CutlineSettings

REVIEW_FLOW = "review-cutout"
# Waiting (suspended) reviews, and those about to wait or landing a decision right now.
OPEN_STATES = ["PAUSED", "SCHEDULED", "PENDING", "RUNNING"]
ESCALATED_TAG = "escalated"


class ReviewEntry(BaseModel):
    """One waiting review."""

    run_id: str
    run_name: str
    job_id: str
    sku: str
    category: str
    reasons: str
    deadline: str
    queue: str
    priority: int
    waiting_since: str
    age_hours: float
    overdue: bool
    escalated: bool
    state: str
    ui_url: str
    source: str


def parse_deadline(text: str) -> datetime | None:
    """A manifest deadline as a UTC moment; a date alone means the end of that day."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if len(text) <= 10:
        value = value + timedelta(days=1) - timedelta(seconds=1)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _entry(run: Any, settings: CutlineSettings, now: datetime, ui_url: str) -> ReviewEntry:
    item = run.parameters.get("item", {})
    ctx = run.parameters.get("ctx", {})
    since = run.created  # asking again after a bad answer does not reset the clock
    age = (now - since).total_seconds() / 3600 if since else 0.0
    deadline = parse_deadline(item.get("deadline", ""))
    overdue = age >= settings.review_escalate_after_hours or (
        deadline is not None and now > deadline
    )
    return ReviewEntry(
        run_id=str(run.id),
        run_name=run.name,
        job_id=ctx.get("job_id", ""),
        sku=item.get("sku", ""),
        category=item.get("category", ""),
        reasons=item.get("reasons", ""),
        deadline=item.get("deadline", ""),
        queue=item.get("queue", ""),
        priority=item.get("priority") or 99,
        waiting_since=since.isoformat(timespec="seconds") if since else "",
        age_hours=round(age, 2),
        overdue=overdue,
        escalated=ESCALATED_TAG in (run.tags or []),
        state=run.state.name if run.state else "",
        ui_url=f"{ui_url}/runs/flow-run/{run.id}",
        source=item.get("source_name", ""),
    )


def cancel_reviews_of_gone_files(job: str, current: dict[str, set[tuple[str, str]]]) -> list[str]:
    """Cancel the open review runs of a job whose image is no longer in the shoot, or whose
    file now holds other content: approving one later would publish what the shoot no longer
    has. ``current`` is what `ShootTally.versions` returns. Returns the cancelled run ids."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    cancelled = []
    with get_client(sync_client=True) as client:
        for run in waiting_runs(job):
            item = run.parameters.get("item", {})
            versions = current.get(item.get("source_name", ""))
            hashes = {sha for sha, _ in versions or ()}
            if versions is not None and (item.get("sha256") in hashes or "" in hashes):
                continue
            client.set_flow_run_state(
                run.id,
                Cancelled(message="The image left the shoot or was replaced by a new version."),
                force=True,
            )
            cancelled.append(str(run.id))
    return cancelled


def cancel_run(run_id: str, message: str) -> None:
    """End a waiting run without an answer, saying why (shown in the UI)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(run_id), Cancelled(message=message), force=True)


def _review_filters(job: str | None, states: list[str]) -> dict[str, Any]:
    """The API filters of a job's (or every job's) review runs in ``states``."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )

    return {
        "flow_filter": FlowFilter(name=FlowFilterName(any_=[REVIEW_FLOW])),
        "flow_run_filter": FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
            tags=FlowRunFilterTags(all_=[f"job:{job}"]) if job else None,
        ),
    }


def count_waiting_runs(job: str) -> int:
    """How many review runs of ``job`` wait for a retoucher (suspended), counted by the
    server: cheap at any queue length, where listing them reads every run's parameters."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.count_flow_runs(**_review_filters(job, ["PAUSED"]))


def another_open_review(job: str, run_id: str) -> bool:
    """Whether a review run of ``job`` other than ``run_id`` is still open (reads two runs,
    not the whole queue: asked once per decision)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(**_review_filters(job, OPEN_STATES), limit=2)
    return any(str(run.id) != run_id for run in runs)


def waiting_runs(job: str | None) -> list[Any]:
    from prefect.client.orchestration import get_client

    filters = _review_filters(job, OPEN_STATES)
    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_flow_runs(**filters, limit=200, offset=offset)
            runs.extend(page)
            if len(page) < 200:
                return runs
            offset += 200


def sort_key(entry: ReviewEntry) -> tuple[str, int, str]:
    """Deadline first (none last), then queue priority, then oldest first."""
    return (entry.deadline or "9999", entry.priority, entry.waiting_since)


def list_reviews(
    settings: CutlineSettings, ui_url: str, job: str | None = None
) -> list[ReviewEntry]:
    """Open review runs (waiting, starting or landing), ordered by deadline, priority, age."""
    now = datetime.now(UTC)
    runs = waiting_runs(job)
    return sorted((_entry(run, settings, now, ui_url) for run in runs), key=sort_key)


class AnswerNotUsed(RuntimeError):
    """Another answer reached the run first (the first answer wins): this one was not used.
    ``used`` is the answer that was, as its form sent it; ``state`` the run's state then."""

    def __init__(self, run_id: str, used: dict[str, Any], state: str) -> None:
        self.run_id, self.used, self.state = run_id, used, state
        super().__init__(
            f"your answer was not used: {describe_answer(used)} reached run {run_id} first "
            "(the first answer wins)"
        )


def describe_answer(answer: dict[str, Any]) -> str:
    """'reject by Bo', 'send-back SKU-1, SKU-2 by Pat': what an answer decided, and who."""
    who = str(answer.get("retoucher") or answer.get("producer") or "someone").strip()
    what = str(answer.get("decision") or "an answer")
    if answer.get("send_back"):
        what += f" {answer['send_back']}"
    if answer.get("retouched_file"):
        what += f" ({answer['retouched_file']})"
    return f"{what} by {who}"


def answers_given(client: Any, run_id: str) -> list[dict[str, Any]]:
    """Every answer a run was resumed with (each form's response), oldest first."""
    import orjson

    found = []
    for prefix in ("suspended-", "paused-"):
        inputs = client.filter_flow_run_input(UUID(run_id), prefix, 200, set())
        found += [i for i in inputs if i.key.endswith("-response")]
    found.sort(key=lambda i: i.created or datetime.min.replace(tzinfo=UTC))
    return [orjson.loads(i.value) for i in found]


def last_refusal(run_id: str) -> str:
    """Why the newest answer to a review or sign-off run was refused ('' when none was): its
    flow stores each answer's verdict as the run input ``verdict-<attempt>``, the same text
    the re-asked form shows."""
    import orjson
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        verdicts = client.filter_flow_run_input(UUID(run_id), "verdict-", 200, set())
    verdicts = sorted(verdicts, key=lambda i: int(i.key.rsplit("-", 1)[-1]))
    return str(orjson.loads(verdicts[-1].value) or "") if verdicts else ""


def _answer_at(client: Any, run_id: str, key: str) -> dict[str, Any] | None:
    import orjson
    from prefect.exceptions import ObjectNotFound

    try:
        return orjson.loads(client.read_flow_run_input(UUID(run_id), key))
    except ObjectNotFound:
        return None


def resume_review(run_id: str, decision: dict[str, Any], starting_wait: float = 120.0) -> None:
    """Resume a waiting review (or sign-off) with the same input the UI's form would send.
    A run still starting (listed right after the shoot returned, not yet suspended) is
    waited for, up to ``starting_wait`` seconds, instead of refused.

    The first answer wins: when another answer reached the run first (two retouchers at
    once, or one answering a review already being landed or decided), this one is not used
    and `AnswerNotUsed` says which answer was. Prefect's own resume call reports a run that
    stopped waiting in between as done; here it never passes silently."""
    import time

    import orjson
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.input import keyset_from_paused_state

    sent = orjson.loads(orjson.dumps(decision))  # as the server stores it
    deadline = time.monotonic() + starting_wait
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(run_id)).state
            if state is not None and state.is_paused():
                break
            given = answers_given(client, run_id)
            if given:  # answered already: being checked, landed, or decided
                raise AnswerNotUsed(run_id, given[-1], state.name if state else "")
            if state is None or state.is_final():
                raise RuntimeError(
                    f"the run ended {state.name if state else 'without a state'} "
                    f"({(state.message if state else '') or 'no message'}) without an answer; "
                    "nothing waits for one"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the run is still {state.name} after {starting_wait:.0f} s, not waiting for "
                    "an answer yet; try again in a minute (`cutline review list` shows its state)"
                )
            time.sleep(0.5)
        response_key = keyset_from_paused_state(state)["response"]
        try:
            result = client.resume_flow_run(UUID(run_id), run_input=decision)
        except Exception:
            # Two resumes at once can make the server refuse one outright (its answer's key
            # is taken): whose answer is stored says what happened.
            stored = _answer_at(client, run_id, response_key)
            if stored is not None and stored != sent:
                raise AnswerNotUsed(run_id, stored, "") from None
            raise
        stored = _answer_at(client, run_id, response_key)
        if stored is not None and stored != sent:
            run = client.read_flow_run(UUID(run_id))
            raise AnswerNotUsed(run_id, stored, run.state.name if run.state else "")
        if result.status == SetStateStatus.ACCEPT:
            return
        if result.status == SetStateStatus.ABORT:  # it stopped waiting between our reads
            given = answers_given(client, run_id)
            if given and given[-1] != sent:
                raise AnswerNotUsed(run_id, given[-1], "")
        reason = getattr(result.details, "reason", None) or result.status.value
        if result.state and result.state.type.value == "FAILED":
            reason = "it timed out waiting and can no longer be resumed"
        raise RuntimeError(f"Cannot resume this run: {reason}")


def read_run(run_id: str) -> Any:
    """The flow run as the API has it now."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id))


def wait_for_outcome(run_id: str, timeout: float = 300.0, poll: float = 1.0) -> Any:
    """Wait until a resumed review either finishes or asks again (suspended with a new form)."""
    import time

    deadline = time.monotonic() + timeout
    left_pause = False
    while True:
        run = read_run(run_id)
        state = run.state
        if state.is_final():
            return run
        if not state.is_paused():
            left_pause = True
        elif left_pause:
            return run
        if time.monotonic() > deadline:
            return run
        time.sleep(poll)


def mark_escalated(run_id: str) -> bool:
    """Tag a review run as escalated; False when it already was."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        if ESCALATED_TAG in (run.tags or []):
            return False
        client.update_flow_run(UUID(run_id), tags=[*(run.tags or []), ESCALATED_TAG])
        return True


def overdue_cutoff(settings: CutlineSettings) -> timedelta:
    """How long a review may wait before it is escalated."""
    return timedelta(hours=settings.review_escalate_after_hours)
