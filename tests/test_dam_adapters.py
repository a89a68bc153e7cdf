"""Every DAM adapter passes the same contract: local catalog, object store on SeaweedFS, HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutline.base import storage
from cutline.base.errors import ConfigError
from dam_adapters import create_adapter, known_adapters
from dam_adapters.local_catalog import LocalCatalog
from dam_adapters.object_store import ObjectStoreCatalog
from tests.dam_contract import DamAdapterContract


class TestLocalCatalog(DamAdapterContract):
    @pytest.fixture
    def adapter(self, tmp_path: Path):
        return LocalCatalog(tmp_path / "catalog")

    def test_renditions_are_copied_into_the_catalog(self, adapter, rendition_uri, tmp_path):
        record = adapter.register(self.submission(rendition_uri))
        stored = Path(record.renditions["png"])
        assert stored.is_relative_to(tmp_path / "catalog" / "files")
        assert stored.read_bytes() == Path(rendition_uri).read_bytes()


@pytest.mark.slow
class TestObjectStoreCatalogOnSeaweedFS(DamAdapterContract):
    @pytest.fixture
    def rendition_uri(self, bucket) -> str:
        return storage.write_bytes(f"s3://{bucket}/out/SS26-0142/png/cutout.png", b"\x89PNG-in-s3")

    @pytest.fixture
    def adapter(self, bucket):
        return ObjectStoreCatalog(f"s3://{bucket}/out/_catalog")

    def test_records_are_json_next_to_the_renditions(self, adapter, rendition_uri, bucket):
        record = adapter.register(self.submission(rendition_uri))
        uri = f"s3://{bucket}/out/_catalog/SS26-0142/{record.dam_id}.json"
        assert storage.exists(uri)
        assert b'"sku": "SKU-100"' in storage.read_bytes(uri)
        assert record.renditions["png"] == rendition_uri


def test_adapters_are_chosen_by_name(settings, override_settings, tmp_path):
    assert known_adapters() == ["http", "local-catalog", "object-store"]
    local = override_settings(dam_adapter="object-store", output_root=str(tmp_path / "out"))
    adapter = create_adapter(local)
    assert isinstance(adapter, ObjectStoreCatalog) and adapter.root == str(
        tmp_path / "out" / "_catalog"
    )


def test_unknown_adapter_lists_the_known_ones(override_settings):
    with pytest.raises(ConfigError) as info:
        create_adapter(override_settings(dam_adapter="bynder"))
    assert (
        "bynder" in str(info.value)
        and "local-catalog" in str(info.value)
        and "http" in str(info.value)
    )


def test_missing_optional_dependency_says_what_to_install(override_settings, monkeypatch):
    from dam_adapters import registry

    factory, _, _ = registry._ADAPTERS["http"]
    monkeypatch.setitem(
        registry._ADAPTERS, "http", (factory, "cutline_missing_dam_sdk", "cutline-dam-sdk")
    )
    with pytest.raises(ConfigError) as info:
        create_adapter(
            override_settings(dam_adapter="http", dam_http_base_url="http://127.0.0.1:9")
        )
    assert "pip install cutline-dam-sdk" in str(info.value)


def test_http_adapter_needs_a_base_url(override_settings):
    with pytest.raises(ConfigError, match="CUTLINE_DAM_HTTP_BASE_URL"):
        create_adapter(override_settings(dam_adapter="http"))


DAM_TOKEN = "dam-token-do-not-log-4711"


@pytest.fixture
def dam_server():
    from tests.dam_http_server import DamServer

    with DamServer(DAM_TOKEN) as server:
        yield server


def _http_adapter(url: str, **kwargs):
    from cutline.base.settings import DEFAULT_RULES_FILE
    from dam_adapters.http import HttpDam

    mapping = DEFAULT_RULES_FILE.parent.parent / "dam_adapters" / "http_mapping.yaml"
    return HttpDam.from_file(url, mapping, token=DAM_TOKEN, max_backoff=2.0, **kwargs)


class TestHttpDam(DamAdapterContract):
    @pytest.fixture
    def adapter(self, dam_server):
        return _http_adapter(dam_server.url)

    def test_fields_are_mapped_and_files_uploaded(self, adapter, dam_server, rendition_uri):
        record = adapter.register(self.submission(rendition_uri))
        stored = dam_server.state.assets[record.dam_id]
        assert stored["jobId"] == "SS26-0142" and stored["approvalState"] == "auto-approved"
        assert dam_server.state.files[(record.dam_id, "png")] == Path(rendition_uri).read_bytes()
        assert record.renditions["png"] == f"dam://{record.dam_id}/png"

    def test_every_write_carries_an_idempotency_key(self, adapter, dam_server, rendition_uri):
        record = adapter.register(self.submission(rendition_uri))
        adapter.update_approval(record.dam_id, "approved", by="Ana")
        writes = [r for r in dam_server.state.requests if r.method in {"POST", "PUT", "PATCH"}]
        assert writes and all(r.headers.get("Idempotency-Key") for r in writes)
        assert writes[0].headers["Idempotency-Key"] == record.idempotency_key
        assert record.idempotency_key.isascii() and record.idempotency_key.startswith("SS26-0142:")

    def test_429_and_500_are_retried_honouring_retry_after(self, dam_server, rendition_uri):
        waits: list[float] = []
        adapter = _http_adapter(dam_server.url, sleep=waits.append)
        dam_server.state.fail_next(429, headers={"Retry-After": "1"})
        dam_server.state.fail_next(500, times=2)
        record = adapter.register(self.submission(rendition_uri))
        assert adapter.get(record.dam_id).sku == "SKU-100"
        assert waits[0] == 1.0  # Retry-After honoured
        assert len(waits) == 3 and all(0 < w <= 2.0 for w in waits[1:])  # backoff, capped
        assert len(dam_server.state.assets) == 1

    def test_gives_up_with_a_clear_error_and_no_secret(self, dam_server, rendition_uri):
        from dam_adapters.http import DamHttpError

        adapter = _http_adapter(dam_server.url, sleep=lambda _: None, max_retries=2)
        dam_server.state.fail_next(503, times=10)
        with pytest.raises(DamHttpError) as info:
            adapter.register(self.submission(rendition_uri))
        message = str(info.value)
        assert "HTTP 503" in message and "after 2 retries" in message
        assert DAM_TOKEN not in message
        assert all(
            r.headers.get("Authorization") == f"Bearer {DAM_TOKEN}"
            for r in dam_server.state.requests
        )

    def test_an_error_body_echoing_the_token_never_carries_it_on(self, dam_server, rendition_uri):
        from dam_adapters.http import DamHttpError

        adapter = _http_adapter(dam_server.url, sleep=lambda _: None, max_retries=0)
        dam_server.state.fail_next(400, echo=True)
        with pytest.raises(DamHttpError) as info:
            adapter.register(self.submission(rendition_uri))
        message = str(info.value)
        assert "HTTP 400" in message and "request_headers" in message  # the body is kept...
        assert DAM_TOKEN not in message and "[redacted]" in message  # ...without the token

    def test_a_base_url_with_a_password_is_refused_without_printing_it(self):
        from cutline.base.errors import ConfigError

        with pytest.raises(ConfigError) as info:
            _http_adapter("https://studio:hunter22@dam.example/api")
        assert "hunter22" not in str(info.value) and "CUTLINE_DAM_HTTP_TOKEN" in str(info.value)

    def test_client_errors_are_not_retried(self, dam_server, rendition_uri):
        from dam_adapters.http import DamHttpError

        waits: list[float] = []
        adapter = _http_adapter(dam_server.url, sleep=waits.append)
        dam_server.state.fail_next(400)
        with pytest.raises(DamHttpError, match="HTTP 400"):
            adapter.register(self.submission(rendition_uri))
        assert waits == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("Thu, 01 Jan 1970 00:00:10 GMT", 5.0), ("soon", None), (None, None)],
)
def test_retry_after_parsing(header, expected):
    from dam_adapters.http import retry_after_seconds

    assert retry_after_seconds(header, now=5.0) == expected


@pytest.mark.slow
def test_an_asset_registered_under_the_old_key_is_withdrawn_once_registered_anew(
    prefect_server, settings, tmp_path
):
    """Catalogs written before the key named SKU and file: a rerun registers the asset under
    the new key, and the old record is withdrawn instead of standing beside it."""
    from cutline.domain.limits import ensure_limits
    from dam_adapters import ApprovalState, AssetSubmission
    from dam_adapters.base import dam_id_for, next_record
    from dam_adapters.local_catalog import LocalCatalog
    from tasks.register import withdraw_stale_assets

    ensure_limits(settings)  # withdrawals honour the DAM write rate limit

    catalog = LocalCatalog(tmp_path / "catalog")
    png = tmp_path / "c.png"
    png.write_bytes(b"png")
    asset = AssetSubmission(
        job_id="OLD-1",
        sku="SKU-1",
        source="/s/a.jpg",
        source_name="a.jpg",
        content_hash="c" * 64,
        approval_state=ApprovalState.AUTO_APPROVED,
        renditions={"png": str(png)},
    )
    legacy_key = f"OLD-1:{'c' * 64}"  # the key format before
    draft = next_record(None, asset, {"png": str(png)}, dam_id=dam_id_for(legacy_key))
    catalog._write(draft.model_copy(update={"idempotency_key": legacy_key}))  # as an old catalog
    fresh = catalog.register(asset)  # what the rerun does
    (gone,) = withdraw_stale_assets(catalog, "OLD-1", {"a.jpg": {("c" * 64, "SKU-1")}})
    assert gone.idempotency_key == legacy_key and gone.approval_state == ApprovalState.WITHDRAWN
    assert catalog.get(fresh.dam_id).approval_state == ApprovalState.AUTO_APPROVED
