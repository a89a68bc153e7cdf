"""A shoot from s3:// to s3:// on a real SeaweedFS server, residency checks, and no leaked keys."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from cutline.base import storage
from cutline.base.errors import ConfigError
from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.records.ledger import read_ledger
from tests import s3server

pytestmark = pytest.mark.slow


def _upload_shoot(tmp_path: Path, bucket: str, job: str) -> str:
    local = tmp_path / "shoot"
    write_sample_shoot(local, DEFAULT_SAMPLES, size=(400, 300))
    (local / "broken.jpg").write_bytes(b"not a photo")
    prefix = f"s3://{bucket}/shoots/{job}"
    for path in local.iterdir():
        storage.write_bytes(f"{prefix}/{path.name}", path.read_bytes())
    return prefix


@pytest.fixture(scope="module")
def s3_run(s3, prefect_server, model_home, tmp_path_factory):
    import s3fs

    from cutline.base.settings import reload_settings
    from flows.process_shoot import process_shoot

    fs = s3fs.S3FileSystem(
        key=s3server.ACCESS_KEY,
        secret=s3server.SECRET_KEY,
        client_kwargs={"endpoint_url": s3.endpoint},
    )
    bucket = "shoots-eu"
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    shoot = _upload_shoot(tmp_path_factory.mktemp("s3"), bucket, "S3-0001")
    import os

    os.environ["CUTLINE_DAM_ADAPTER"] = "object-store"
    reload_settings()
    try:
        summary = process_shoot(
            shoot=shoot,
            job_id="S3-0001",
            manifest=f"{shoot}/manifest.csv",
            output_root=f"s3://{bucket}/out",
        )
    finally:
        os.environ.pop("CUTLINE_DAM_ADAPTER")
        reload_settings()
    return summary, bucket


def test_every_output_lands_in_the_bucket(s3_run):
    summary, bucket = s3_run
    assert summary.ledger == f"s3://{bucket}/out/S3-0001/ledger.csv"
    rows = {r["source_name"]: r for r in read_ledger(summary.ledger)}
    assert set(rows) == {s.filename for s in DEFAULT_SAMPLES} | {"broken.jpg"}
    assert rows["broken.jpg"]["lane"] == "failed"
    assert rows["SKU-2001_front.jpg"]["lane"] == "review"
    assert rows["SKU-2001_front.jpg"]["psd"].startswith(f"s3://{bucket}/out/S3-0001/review/")
    auto = [r for r in rows.values() if r["lane"] == "auto"]
    assert len(auto) == 3
    for row in auto:
        assert row["source"].startswith(f"s3://{bucket}/shoots/S3-0001/")
        png = Image.open(io.BytesIO(storage.read_bytes(row["png"])))
        assert png.mode == "RGBA" and png.size == (400, 300)
        assert storage.exists(row["psd"]) and storage.exists(row["mask"])
        for jpg in row["jpg"].split(";"):
            assert jpg.startswith(f"s3://{bucket}/out/S3-0001/jpg/")
            assert Image.open(io.BytesIO(storage.read_bytes(jpg))).format == "JPEG"
        record = json.loads(
            storage.read_bytes(f"s3://{bucket}/out/_catalog/S3-0001/{row['dam_id']}.json")
        )
        assert record["sku"] == row["sku"] and record["renditions"]["png"] == row["png"]


def test_summary_says_where_images_were_processed_and_stored(s3_run):
    summary, bucket = s3_run
    assert "Processed on host" in summary.residency
    assert f"shoot: s3://{bucket}/shoots/S3-0001" in summary.residency
    assert "region eu-central-1" in summary.residency


def test_credentials_never_appear_in_outputs_logs_or_run_parameters(s3_run, settings):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    summary, bucket = s3_run
    secret = s3server.SECRET_KEY.encode()
    loc = storage.locate(f"s3://{bucket}/out")
    for path in loc.fs.find(loc.path):
        assert secret not in loc.fs.cat_file(path), path
    for log in (settings.data_root / "logs").glob("*.log"):
        assert secret not in log.read_bytes(), log
    assert s3server.SECRET_KEY not in summary.model_dump_json()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["S3-0001"]))
        )
        assert runs
        for run in runs:
            assert s3server.SECRET_KEY not in json.dumps(run.parameters)


def test_a_wrong_secret_is_refused_before_any_image_is_read(
    s3_run, prefect_server, model_home, override_settings
):
    from flows.process_shoot import process_shoot

    # s3_run put a real shoot at this prefix: only the wrong secret stands in the way.

    override_settings(s3_secret_access_key="not-the-secret")
    state = process_shoot(
        shoot="s3://shoots-eu/shoots/S3-0001",
        job_id="S3-BADKEY",
        output_root="s3://shoots-eu/out",
        return_state=True,
    )
    assert state.is_failed()
    message = str(state.message) + repr(state.result(raise_on_failure=False))
    assert "not-the-secret" not in message
    override_settings(s3_secret_access_key=s3server.SECRET_KEY)
    assert not storage.exists("s3://shoots-eu/out/S3-BADKEY/ledger.csv")


@pytest.mark.parametrize(
    ("settings_env", "expected"),
    [
        # The bucket's server reports no region, so the configured one counts: us-east-1 is outside.
        ({"s3_region": "us-east-1"}, "region 'us-east-1'"),
        # Inside the EU, but through an endpoint the studio has not approved.
        (
            {"s3_region": "eu-central-1", "allowed_endpoints": '["s3.eu-central-1.amazonaws.com"]'},
            "endpoint 127.0.0.1",
        ),
        # No region known at all: refuse rather than guess.
        ({"s3_region": ""}, "cannot be determined"),
    ],
)
def test_eu_residency_refuses_before_any_image_is_read(
    s3, bucket, override_settings, settings_env, expected
):
    from flows.process_shoot import preflight

    shoot = f"s3://{bucket}/shoots/R-1"
    storage.write_bytes(f"{shoot}/a.jpg", b"x")
    override_settings(residency="eu", **settings_env)
    with pytest.raises(ConfigError) as info:
        preflight("R-1", shoot, None, f"s3://{bucket}/out")
    assert expected in str(info.value) and "Residency 'eu'" in str(info.value)
    assert not storage.exists(f"s3://{bucket}/out")


def test_eu_residency_accepts_an_eu_bucket_through_an_allowed_endpoint(
    s3, bucket, override_settings, model_home
):
    from flows.process_shoot import preflight

    host = s3.endpoint.removeprefix("http://")
    storage.write_bytes(f"s3://{bucket}/shoots/R-2/a.jpg", b"x")
    override_settings(
        residency="eu", s3_region="eu-central-1", allowed_endpoints=json.dumps([host])
    )
    *_, report = preflight("R-2", f"s3://{bucket}/shoots/R-2", None, f"s3://{bucket}/out")
    assert report.policy == "eu"
    assert {loc.role: loc.region for loc in report.locations} == {
        "shoot": "eu-central-1",
        "output": "eu-central-1",
    }


def test_eu_residency_checks_the_dam_endpoint(override_settings, tmp_path, model_home):
    from flows.process_shoot import preflight

    (tmp_path / "shoot").mkdir()
    override_settings(
        residency="eu", dam_adapter="http", dam_http_base_url="https://dam.us.example/api"
    )
    with pytest.raises(
        ConfigError, match=r"DAM endpoint dam\.us\.example is not in allowed_endpoints"
    ):
        preflight("R-3", str(tmp_path / "shoot"), None, str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("region", "inside"),
    [
        ("eu-west-1", True),
        ("eu-central-2", True),
        ("europe-west4", True),
        ("fr-par", True),
        ("us-east-1", False),
        ("ap-southeast-2", False),
        ("ch-gva-2", False),
        ("", False),
    ],
)
def test_eu_region_list(region, inside):
    from cutline.base.settings import CutlineSettings
    from cutline.domain.residency import load_regions

    assert load_regions(CutlineSettings().residency_file).is_eu(region) is inside
