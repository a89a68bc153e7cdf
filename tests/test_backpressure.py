"""Backpressure: limits created from settings, and several shoots submitted at once."""

from __future__ import annotations

import pytest

from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.records.ledger import read_ledger
from cutline.services.limits import DAM_LIMIT, MODEL_LIMIT
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def test_model_and_dam_limits_come_from_settings(prefect_server, settings):
    from prefect.client.orchestration import get_client

    from cutline.ops import stack

    stack.up(settings)  # creates (or updates) them, as `cutline up` does
    with get_client(sync_client=True) as client:
        model = client.read_global_concurrency_limit_by_name(MODEL_LIMIT)
        dam = client.read_global_concurrency_limit_by_name(DAM_LIMIT)
    assert model.limit == settings.model_slots
    assert dam.slot_decay_per_second == settings.dam_writes_per_second


def test_a_limit_another_process_creates_at_the_same_moment_is_taken_over(prefect_server):
    """Prefect's upsert reads, then creates: here the limit appears between the two, as when
    two runs of one job start together (the second used to fail with ObjectAlreadyExists)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from cutline.services.limits import upsert_limit

    name = "cutline-test-raced-limit"
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 3)  # the other process's
        real_read = client.read_global_concurrency_limit_by_name
        reads = []

        def read_before_the_other_process_created_it(limit_name):
            reads.append(limit_name)
            if len(reads) == 1:
                raise ObjectNotFound(http_exc=Exception("not there yet"))
            return real_read(limit_name)

        client.read_global_concurrency_limit_by_name = read_before_the_other_process_created_it
        upsert_limit(client, name, 1, slot_decay_per_second=0.5)
        client.read_global_concurrency_limit_by_name = real_read
        limit = client.read_global_concurrency_limit_by_name(name)
        client.delete_global_concurrency_limit_by_name(name)
    assert len(reads) == 2
    assert (limit.limit, limit.slot_decay_per_second) == (1, 0.5)


def test_five_shoots_submitted_at_once_all_complete_with_at_most_two_running(
    prefect_server, model_home, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    runs = []
    for index in range(5):
        shoot = tmp_path / f"shoot{index}"
        write_sample_shoot(shoot, DEFAULT_SAMPLES[index % 3 : index % 3 + 1], size=(320, 240))
        runs.append(
            run_deployment(
                "process-shoot/shoot",
                parameters={
                    "shoot": str(shoot),
                    "job_id": f"MANY-{index}",
                    "output_root": str(tmp_path / "out"),
                },
                timeout=0,
                as_subflow=False,
            )
        )
    with get_client(sync_client=True) as client:

        def all_final() -> list | None:
            final = [client.read_flow_run(r.id) for r in runs]
            return final if all(r.state.is_final() for r in final) else None

        final = wait_until(all_final, "the five shoots to finish", timeout=600, interval=2)
    assert [r.state.name for r in final] == ["Completed"] * 5
    for index in range(5):
        rows = read_ledger(str(tmp_path / "out" / f"MANY-{index}" / "ledger.csv"))
        assert len(rows) == 1 and rows[0]["lane"] in {"auto", "review"}
    spans = [(r.start_time, r.end_time) for r in final]
    for start, _ in spans:  # never more than the deployment's limit running at once
        assert sum(1 for s, e in spans if s <= start < e) <= 2
    # Start order is not asserted: Prefect's ENQUEUE gives no strict FIFO (seen once under load).
