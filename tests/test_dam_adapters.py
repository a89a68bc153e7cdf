"""Every DAM adapter passes the same contract: local catalog, object store on SeaweedFS, HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cutline.base import storage
from cutline.base.errors import ConfigError
from dam_adapters import ApprovalState, create_adapter, known_adapters
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

    def test_a_registration_cut_short_before_its_index_is_finished_once_by_the_retry(
        self, adapter, rendition_uri, tmp_path
    ):
        record = adapter.register(self.submission(rendition_uri))
        with adapter._connect() as db:  # a crash after the record file, before the index
            db.execute("DELETE FROM assets")
        assert adapter.find(record.idempotency_key) is None
        again = adapter.register(self.submission(rendition_uri))
        assert again.dam_id == record.dam_id and adapter.get(record.dam_id) == again
        assert [r.dam_id for r in adapter.list_job("SS26-0142")] == [record.dam_id]
        assert len(list((tmp_path / "catalog" / "records").iterdir())) == 1


class TestObjectStoreCatalogOnDisk(DamAdapterContract):
    @pytest.fixture
    def adapter(self, tmp_path: Path):
        return ObjectStoreCatalog(str(tmp_path / "catalog"))

    def test_a_registration_cut_short_between_its_writes_is_finished_once_by_the_retry(
        self, adapter, rendition_uri, monkeypatch
    ):
        """A record and its id pointer are two writes: whichever one a lost connection cuts
        off, the retry leaves one asset that find(), get() and list_job() all see."""
        real = storage.write_bytes
        writes: list[str] = []

        def cut_short(uri: str, data: bytes) -> str:
            writes.append(uri)
            if len(writes) == 2:
                raise OSError("connection reset by peer (injected)")
            return real(uri, data)

        monkeypatch.setattr(storage, "write_bytes", cut_short)
        with pytest.raises(OSError):
            adapter.register(self.submission(rendition_uri))
        monkeypatch.setattr(storage, "write_bytes", real)
        record = adapter.register(self.submission(rendition_uri))
        assert adapter.get(record.dam_id) == record
        assert adapter.find(record.idempotency_key) == record
        assert [r.dam_id for r in adapter.list_job("SS26-0142")] == [record.dam_id]


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

    def test_a_slow_dam_ignoring_the_idempotency_key_gets_one_asset(
        self, dam_server, rendition_uri
    ):
        """Issue 27 #10: the DAM stores the registration just after the client's timeout
        (31 s against 30 s, scaled down), answers later still, and ignores Idempotency-Key.
        The adapter looks the key up before sending it again: one asset, and the call
        returns it (never "failed" while the DAM has it)."""
        dam_server.state.honour_idempotency_key = False
        dam_server.state.commit_slowly(commit_after=0.6, answer_after=3.0)
        adapter = _http_adapter(dam_server.url, timeout=0.5)
        record = adapter.register(self.submission(rendition_uri))
        assert list(dam_server.state.assets) == [record.dam_id]
        assert [r.method for r in dam_server.state.requests].count("POST") == 1
        stored = adapter.get(record.dam_id)
        assert stored.approval_state == ApprovalState.AUTO_APPROVED
        assert stored.renditions["png"] == f"dam://{record.dam_id}/png"  # finished: files too
        again = adapter.register(self.submission(rendition_uri))  # a rerun
        assert again.dam_id == record.dam_id and len(dam_server.state.assets) == 1

    def test_a_dam_committing_after_the_write_was_sent_again_keeps_one_live_asset(
        self, dam_server, rendition_uri
    ):
        """Slower still: the first POST lands only after the lookup and the second POST. The
        second record is withdrawn at once as a duplicate; the call returns the one kept."""
        dam_server.state.honour_idempotency_key = False
        dam_server.state.commit_slowly(commit_after=0.8, answer_after=3.0)
        adapter = _http_adapter(
            dam_server.url, timeout=0.4, settle=0.0, sleep=lambda _: time.sleep(0.9)
        )
        record = adapter.register(self.submission(rendition_uri))
        assert [r.method for r in dam_server.state.requests].count("POST") == 2
        records = [adapter.get(dam_id) for dam_id in dam_server.state.assets]
        live = [r for r in records if r.approval_state != ApprovalState.WITHDRAWN]
        (twin,) = [r for r in records if r.approval_state == ApprovalState.WITHDRAWN]
        assert [r.dam_id for r in live] == [record.dam_id]
        assert twin.note.startswith("duplicate:") and record.dam_id in twin.note
        assert adapter.find(record.idempotency_key).dam_id == record.dam_id

    def test_two_records_for_one_key_pick_one_and_never_a_third(
        self, adapter, dam_server, rendition_uri
    ):
        """The damage already done (a DAM that registered an image twice): find() always
        returns the first registered, whatever order the DAM lists them in; registering again
        updates that one, withdraws the other, and posts nothing."""
        first = adapter.register(self.submission(rendition_uri))
        twin = dict(dam_server.state.assets[first.dam_id])
        twin.update(id="dam-twin", created_at="2020-01-01T00:00:00+00:00")
        dam_server.state.assets["dam-twin"] = twin  # listed after the first, registered before
        assert {adapter.find(first.idempotency_key).dam_id for _ in range(3)} == {"dam-twin"}
        posts = [r.method for r in dam_server.state.requests].count("POST")
        again = adapter.register(self.submission(rendition_uri, category="homeware"))
        assert again.dam_id == "dam-twin" and again.category == "homeware"
        assert [r.method for r in dam_server.state.requests].count("POST") == posts
        assert len(dam_server.state.assets) == 2
        dropped = adapter.get(first.dam_id)
        assert dropped.approval_state == ApprovalState.WITHDRAWN
        assert dropped.history[-1]["note"].startswith("duplicate:")

    def test_a_lost_answer_that_cannot_be_checked_is_not_sent_again(
        self, dam_server, rendition_uri
    ):
        """A write whose answer was lost while the DAM cannot be asked either: it fails
        saying so, and the DAM holds the asset at most once."""
        from dam_adapters.http import DamHttpError

        dam_server.state.honour_idempotency_key = False
        dam_server.state.commit_slowly(commit_after=0.6, answer_after=3.0, then_unavailable=9)
        adapter = _http_adapter(dam_server.url, timeout=0.5, max_retries=1, sleep=lambda _: None)
        with pytest.raises(DamHttpError) as info:
            adapter.register(self.submission(rendition_uri))
        assert "could not be checked" in str(info.value) and "not sent again" in str(info.value)
        assert [r.method for r in dam_server.state.requests].count("POST") == 1
        time.sleep(0.6)  # the slow commit has landed by now
        assert len(dam_server.state.assets) == 1

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
    from cutline.services.limits import ensure_limits
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


@pytest.mark.slow
def test_a_rerun_withdraws_the_second_record_a_dam_made_of_one_image(
    prefect_server, settings, dam_server, tmp_path
):
    """Damage done before the lookup-before-retry: a DAM holds two records of one image. The
    rerun's reconciliation keeps the one find() returns and withdraws the other, saying why
    (the summary lists it among the withdrawn)."""
    from cutline.services.limits import ensure_limits
    from dam_adapters import AssetSubmission
    from tasks.register import withdraw_stale_assets

    ensure_limits(settings)  # withdrawals honour the DAM write rate limit
    adapter = _http_adapter(dam_server.url)
    png = tmp_path / "c.png"
    png.write_bytes(b"png")
    asset = AssetSubmission(
        job_id="DUP-1",
        sku="SKU-1",
        source="/s/a.jpg",
        source_name="a.jpg",
        content_hash="c" * 64,
        approval_state=ApprovalState.AUTO_APPROVED,
        renditions={"png": str(png)},
    )
    first = adapter.register(asset)
    twin = dict(dam_server.state.assets[first.dam_id])
    twin.update(id="dam-twin", created_at="2999-01-01T00:00:00+00:00")  # registered second
    dam_server.state.assets["dam-twin"] = twin
    current = {"a.jpg": {("c" * 64, "SKU-1")}}
    (gone,) = withdraw_stale_assets(adapter, "DUP-1", current)
    assert gone.dam_id == "dam-twin" and gone.note.startswith("duplicate:")
    assert first.dam_id in gone.note
    assert adapter.get(first.dam_id).approval_state == ApprovalState.AUTO_APPROVED
    assert withdraw_stale_assets(adapter, "DUP-1", current) == []
