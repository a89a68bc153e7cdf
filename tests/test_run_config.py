"""A shoot's settings are frozen once: a worker whose own environment differs still works with
the shoot's model settings, and the job folder keeps the snapshot for the runs after it."""

from __future__ import annotations

import json

import pytest

from cutline.domain.run_config import RunConfig
from cutline.domain.workstate import WorkRecord
from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from tasks.context import cutout_key, load_batch
from tests.contexts import shoot_context

pytestmark = pytest.mark.slow


def test_a_worker_with_other_settings_runs_the_batch_with_the_shoots(
    prefect_server, model_home, settings, tmp_path, override_settings
):
    from flows.process_batch import process_batch
    from tasks.ingest import plan_shoot

    write_sample_shoot(tmp_path, DEFAULT_SAMPLES[:1], size=(320, 240))
    ctx = shoot_context(tmp_path, "FROZEN-1")  # frozen with the second view on, 1024 px
    assert ctx.config.confidence_second_view and ctx.config.model_input_max_side == 1024
    plan = plan_shoot.fn(ctx, str(tmp_path / "manifest.csv"), ctx.config.batch_size)
    # The worker that picks the batch up is set up differently.
    override_settings(confidence_second_view="false", model_input_max_side="320")
    assert process_batch(ctx=ctx, batch=plan.refs[0]) == 1
    (item,) = load_batch(plan.refs[0])
    assert item.lane is not None and not item.error
    assert "view_agreement_iou" in item.signals  # the shoot's second view ran
    state = WorkRecord.model_validate_json(
        (tmp_path / "job" / "state" / f"{item.image_id}.json").read_text()
    )
    assert state.keys["cutout"] == cutout_key(item, ctx)  # computed for 1024 px, not 320


def test_the_snapshot_travels_as_json_without_credentials(settings, override_settings):
    secret = "dam-token-that-must-not-travel"
    local = override_settings(dam_http_token=secret, s3_secret_access_key="s3-secret-x")
    config = RunConfig.freeze(local)
    text = config.model_dump_json()
    assert secret not in text and "s3-secret-x" not in text
    again = RunConfig.model_validate(json.loads(text))
    assert again == config and again.dam["catalog_dir"] == str(local.resolved_catalog_dir)
    # A process uses its own credentials with the shoot's DAM settings.
    merged = again.dam_settings(local)
    assert merged.dam_http_token.get_secret_value() == secret
    assert merged.resolved_catalog_dir == local.resolved_catalog_dir


def test_a_batch_of_a_shoot_started_on_other_code_is_refused_naming_both_versions(
    prefect_server, model_home, settings, tmp_path
):
    from cutline.base.code_version import code_version
    from cutline.base.errors import ConfigError
    from flows.process_batch import process_batch
    from tasks.ingest import plan_shoot

    write_sample_shoot(tmp_path, DEFAULT_SAMPLES[:1], size=(320, 240))
    ctx = shoot_context(tmp_path, "OTHER-CODE")
    assert ctx.config.code_version == code_version()  # frozen by the starting host
    plan = plan_shoot.fn(ctx, str(tmp_path / "manifest.csv"), ctx.config.batch_size)
    older = ctx.model_copy(
        update={"config": ctx.config.model_copy(update={"code_version": "0.0.9+0123456789ab"})}
    )
    with pytest.raises(ConfigError) as refused:
        process_batch(ctx=older, batch=plan.refs[0])
    message = str(refused.value)
    assert "0.0.9+0123456789ab" in message and code_version() in message, message
    assert "Install the same Cutline on every worker host" in refused.value.hint
    (item,) = load_batch(plan.refs[0])
    assert item.lane is None  # nothing was cut out on the other code
