"""A generic REST DAM adapter: configurable endpoints and field mapping, retries with backoff
on 429 and 5xx (Retry-After honoured), and an idempotency key on every write.

A DAM may ignore the idempotency key. So a write whose answer was lost after the request may
have reached the DAM (a timeout, a dropped connection, 500/502/504) is never simply sent again:
the asset is looked up by its key first (for as long again as the timeout, while a slow DAM may
still be committing), and used when it is there."""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cutline.base import storage
from cutline.base.errors import ConfigError, CutlineError
from cutline.base.redact import redact, redact_url
from cutline.base.yamlfile import load_model
from dam_adapters.base import (
    ApprovalState,
    AssetRecord,
    AssetSubmission,
    DamAdapter,
    approval_update,
    first_registered,
    next_record,
    withdraw_duplicate,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers after which the DAM may have done the write (429 and 503 say it did not take it);
# after a 504 the DAM behind the gateway may still be working on it.
UNSURE_STATUSES = frozenset({500, 502, 504})
# Failures before the request left: the DAM cannot have done the write.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

log = logging.getLogger(__name__)


class DamHttpError(CutlineError):
    """The DAM refused or kept failing a request (``status``: its last HTTP status, if any)."""

    def __init__(self, message: str, *, hint: str = "", status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status

    @property
    def refused_credentials(self) -> bool:
        """Whether the DAM refused who is asking (401, 403), not what was asked."""
        return self.status in (401, 403)


class Endpoint(BaseModel):
    """One REST call: method, path template, query templates."""

    model_config = ConfigDict(extra="forbid")

    method: str
    path: str
    query: dict[str, str] = Field(default_factory=dict)


class Endpoints(BaseModel):
    model_config = ConfigDict(extra="forbid")

    create: Endpoint
    update: Endpoint
    get: Endpoint
    find: Endpoint
    list: Endpoint
    upload: Endpoint | None = None


class HttpMapping(BaseModel):
    """The mapping data file."""

    model_config = ConfigDict(extra="forbid")

    endpoints: Endpoints
    idempotency_header: str = "Idempotency-Key"
    id_field: str = "id"
    list_field: str = "items"
    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _renamed_fields(cls, fields: dict[str, str]) -> dict[str, str]:
        """A mapping written before decided_by was named approved_by still works."""
        if "approved_by" in fields and "decided_by" not in fields:
            fields = {("decided_by" if k == "approved_by" else k): v for k, v in fields.items()}
        return fields

    def to_remote(self, data: dict[str, Any]) -> dict[str, Any]:
        """Rename Cutline fields to the DAM's."""
        return {self.fields.get(k, k): v for k, v in data.items()}

    def from_remote(self, data: dict[str, Any]) -> dict[str, Any]:
        """Rename the DAM's fields back to Cutline's."""
        reverse = {v: k for k, v in self.fields.items()}
        return {reverse.get(k, k): v for k, v in data.items()}


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC).timestamp()
    return max(0.0, when.timestamp() - current)


class HttpDam(DamAdapter):
    """Registers assets in a DAM with a REST API."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        mapping: HttpMapping,
        *,
        auth_header: str = "Authorization",
        token: str | None = None,
        auth_scheme: str = "Bearer",
        timeout: float = 30.0,
        max_retries: int = 5,
        max_backoff: float = 60.0,
        settle: float | None = None,
        sleep=time.sleep,
    ) -> None:
        if urlsplit(base_url).username or urlsplit(base_url).password:
            raise ConfigError(
                "The DAM base URL carries a user name or password "
                f"({redact_url(base_url)}); it would be printed and stored with every record.",
                hint="Remove it from CUTLINE_DAM_HTTP_BASE_URL and give the credential as "
                "CUTLINE_DAM_HTTP_TOKEN (sent only in the authorization header).",
            )
        self.base_url = base_url.rstrip("/")
        self.mapping = mapping
        self._secrets = [token] if token else []
        self.max_retries = max_retries
        self.max_backoff = max_backoff
        # How long a write whose answer was lost is looked for before it is sent again.
        self.settle = timeout if settle is None else settle
        self._sleep = sleep
        headers = {"Accept": "application/json"}
        if token:
            headers[auth_header] = f"{auth_scheme} {token}".strip()
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    @classmethod
    def from_file(cls, base_url: str, mapping_file: Path, **kwargs: Any) -> HttpDam:
        """An adapter configured by a mapping data file."""
        return cls(base_url, load_model(mapping_file, HttpMapping, "DAM HTTP mapping"), **kwargs)

    def describe(self) -> str:
        """The DAM's base URL (never the credential)."""
        return f"http DAM at {self.base_url}"

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        asked = (
            retry_after_seconds(response.headers.get("Retry-After"))
            if response is not None
            else None
        )
        if asked is not None:
            return min(asked, self.max_backoff)
        return min(self.max_backoff, 0.5 * (2**attempt)) * (0.5 + random.random() / 2)

    def _request(
        self,
        endpoint: Endpoint,
        fmt: dict[str, str],
        *,
        body: Any = None,
        content: bytes | None = None,
        idempotency_key: str | None = None,
        allow_404: bool = False,
        landed: Callable[[], AssetRecord | None] | None = None,
    ) -> httpx.Response | AssetRecord | None:
        """The DAM's answer, retried on 429, 5xx and transport errors. For a write,
        ``landed`` says whether it took effect (the record it made, or None): it is asked
        after every failure that may have reached the DAM, and its record is returned instead
        of sending the write again."""
        path = endpoint.path.format(**{k: quote(v, safe="") for k, v in fmt.items()})
        params = {k: v.format(**fmt) for k, v in endpoint.query.items()}
        headers = {self.mapping.idempotency_header: idempotency_key} if idempotency_key else {}
        last = ""
        for attempt in range(self.max_retries + 1):
            response = None
            unsure: float | None = None  # the write may have landed: how long to look for it
            try:
                response = self._client.request(
                    endpoint.method,
                    path,
                    params=params or None,
                    json=body,
                    content=content,
                    headers=headers,
                )
            except NOT_SENT as exc:
                last = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            except httpx.TransportError as exc:  # sent; the answer was lost or cut short
                last = redact(f"{type(exc).__name__}: {exc}", self._secrets)
                unsure = self.settle
            else:
                if response.status_code == 404 and allow_404:
                    return None
                if response.status_code < 400:
                    return response
                # The body may echo the request, credentials included: never copy them on.
                last = f"HTTP {response.status_code} {redact(response.text, self._secrets)[:300]}"
                if response.status_code not in RETRY_STATUSES:
                    break
                if response.status_code in UNSURE_STATUSES:
                    unsure = self.settle if response.status_code == 504 else 0.0
            if landed is not None and unsure is not None:
                found = self._look_up(landed, unsure, f"{endpoint.method} {path}", last)
                if found is not None:
                    return found
            if attempt < self.max_retries:
                self._sleep(self._backoff(attempt, response))
        raise DamHttpError(
            f"DAM {endpoint.method} {path} failed: {last} (after {self.max_retries} retries).",
            hint="Check the DAM's status and CUTLINE_DAM_HTTP_* settings, then rerun the job.",
            status=response.status_code if response is not None else None,
        )

    def _look_up(
        self, landed: Callable[[], AssetRecord | None], window: float, call: str, failure: str
    ) -> AssetRecord | None:
        """What ``landed`` finds, asked now and again, backing off, until ``window`` seconds
        have passed (a slow DAM may commit after our timeout). A lookup that fails stops the
        write: sent again blindly, it could be registered twice."""
        waited, pause = 0.0, 0.5
        while True:
            try:
                found = landed()
            except DamHttpError as exc:
                raise DamHttpError(
                    f"DAM {call} got no usable answer ({failure}), and whether it took effect "
                    f"could not be checked: {exc.message} It was not sent again, so the DAM "
                    "holds it at most once.",
                    hint="Rerun the job when the DAM answers again: the rerun looks each asset "
                    "up by its idempotency key before writing it.",
                ) from exc
            if found is not None or waited >= window:
                return found
            step = min(pause, window - waited)
            self._sleep(step)
            waited, pause = waited + step, pause * 2

    def _record(self, data: dict[str, Any]) -> AssetRecord:
        local = self.mapping.from_remote(data)
        local["dam_id"] = str(data.get(self.mapping.id_field, local.get("dam_id", "")))
        return AssetRecord.model_validate(local)

    def _items(self, response: httpx.Response) -> list[dict[str, Any]]:
        payload = response.json()
        return payload if isinstance(payload, list) else payload.get(self.mapping.list_field, [])

    def _upload(self, dam_id: str, renditions: dict[str, str], key: str) -> dict[str, str]:
        endpoint = self.mapping.endpoints.upload
        if endpoint is None:
            return dict(renditions)
        stored = {}
        for kind, uri in renditions.items():
            data = storage.read_bytes(uri)
            digest = hashlib.sha256(data).hexdigest()[:16]
            # A PUT of these bytes to this asset's path replaces what is there: sent again
            # after a lost answer, it leaves one file, so nothing is looked up first.
            response = self._request(
                endpoint,
                {"dam_id": dam_id, "kind": kind},
                content=data,
                idempotency_key=f"{key}:{kind}:{digest}",
            )
            url = ""
            if response is not None and response.headers.get("content-type", "").startswith(
                "application/json"
            ):
                url = response.json().get("url", "")
            stored[kind] = url or f"{self.base_url}{endpoint.path.format(dam_id=dam_id, kind=kind)}"
        return stored

    def _body(self, record: AssetRecord) -> dict[str, Any]:
        data = record.model_dump(mode="json")
        data.pop("dam_id")
        return self.mapping.to_remote(data)

    def register(self, asset: AssetSubmission) -> AssetRecord:
        """Create the asset, or update it when the DAM already has its idempotency key (when
        it holds it twice, the one `first_registered` picks; the others are withdrawn)."""
        matching = self._matching(asset.key)
        existing = self._withdraw_duplicates(matching) if matching else None
        if existing is None:
            created = self._create(asset)
            renditions = self._upload(created.dam_id, asset.renditions, asset.key)
            if renditions != created.renditions:
                return self._put(created.model_copy(update={"renditions": renditions}))
            return created
        renditions = self._upload(existing.dam_id, asset.renditions, asset.key)
        record = next_record(existing, asset, renditions, dam_id=existing.dam_id)
        return existing if record is existing else self._put(record)

    def _create(self, asset: AssetSubmission) -> AssetRecord:
        """POST the new asset; when an answer is lost, the asset found by its key instead of
        a second POST (see the module's docstring)."""
        looked: list[str] = []

        def landed() -> AssetRecord | None:
            looked.append(asset.key)
            return self.find(asset.key)

        draft = next_record(None, asset, dict(asset.renditions), dam_id="pending")
        answer = self._request(
            self.mapping.endpoints.create,
            {"key": asset.key},
            body=self._body(draft),
            idempotency_key=asset.key,
            landed=landed,
        )
        if isinstance(answer, AssetRecord):
            return answer  # the lost answer's POST had registered it
        created = self._record(answer.json())
        if looked:  # sent again: an earlier POST may have landed after it was looked for
            return self._withdraw_duplicates(self._matching(asset.key) or [created])
        return created

    def _withdraw_duplicates(self, records: list[AssetRecord]) -> AssetRecord:
        """The record that stands for one key among ``records`` (see `first_registered`),
        every other record the DAM holds under it withdrawn with the reason."""
        kept = first_registered(records)
        for other in records:
            if other.dam_id != kept.dam_id and other.approval_state != ApprovalState.WITHDRAWN:
                log.warning(
                    "DAM %s holds %s twice; withdrawing %s",
                    self.base_url,
                    kept.idempotency_key,
                    other.dam_id,
                )
                withdraw_duplicate(self, other, kept)
        return kept

    def _put(self, record: AssetRecord) -> AssetRecord:
        body = self._body(record)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

        def landed() -> AssetRecord | None:  # a PUT replaces: looked up only to save a write
            try:
                current = self.get(record.dam_id)
            except KeyError:
                return None
            same = (current.revision, current.updated_at) == (record.revision, record.updated_at)
            return current if same else None

        answer = self._request(
            self.mapping.endpoints.update,
            {"dam_id": record.dam_id},
            body=body,
            idempotency_key=f"{record.idempotency_key}:{digest}",
            landed=landed,
        )
        return answer if isinstance(answer, AssetRecord) else self._record(answer.json())

    def update_approval(
        self, dam_id: str, state: ApprovalState, *, by: str, note: str = ""
    ) -> AssetRecord:
        """Change the approval state, keeping the history."""
        return self._put(approval_update(self.get(dam_id), state, by, note))

    def _matching(self, key: str) -> list[AssetRecord]:
        response = self._request(self.mapping.endpoints.find, {"key": key})
        items = [self._record(i) for i in self._items(response)]
        return [r for r in items if r.idempotency_key == key]

    def find(self, key: str) -> AssetRecord | None:
        """The asset with this idempotency key, if the DAM has it; when it holds several (it
        ignored the key once), always the same one (see `first_registered`), which a shoot's
        rerun keeps while withdrawing the others."""
        matching = self._matching(key)
        if len(matching) > 1:
            log.warning("DAM %s holds %d records for %s", self.base_url, len(matching), key)
        return first_registered(matching) if matching else None

    def get(self, dam_id: str) -> AssetRecord:
        """One asset by id; KeyError when unknown."""
        response = self._request(self.mapping.endpoints.get, {"dam_id": dam_id}, allow_404=True)
        if response is None:
            raise KeyError(f"no asset {dam_id!r} in {self.describe()}")
        return self._record(response.json())

    def list_job(self, job_id: str) -> list[AssetRecord]:
        """All assets of a job, ordered by SKU then source name."""
        response = self._request(self.mapping.endpoints.list, {"job_id": job_id})
        records = [self._record(i) for i in self._items(response)]
        return sorted(
            (r for r in records if r.job_id == job_id), key=lambda r: (r.sku, r.source_name)
        )
