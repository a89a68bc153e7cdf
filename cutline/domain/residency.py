"""Data residency: prove, before any image is read, that images stay where the studio allows."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, Field

from cutline.base import storage
from cutline.base.errors import ConfigError
from cutline.base.settings import CutlineSettings


class ResidencyRegions(BaseModel):
    """The EU/EEA region list (data file)."""

    prefixes: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)

    def is_eu(self, region: str) -> bool:
        """Whether a region name is inside the EU/EEA."""
        name = region.strip().lower()
        return name in {r.lower() for r in self.regions} or any(
            name.startswith(p) for p in self.prefixes
        )


class StorageLocation(BaseModel):
    """Where one shoot input or output lives."""

    role: str
    uri: str
    kind: str = Field(description="'local disk' or 'object storage'")
    region: str = Field(default="", description="Bucket region, where known.")
    region_source: str = Field(default="", description="Who said so: the server, or the settings.")
    endpoint: str = ""


class ResidencyReport(BaseModel):
    """What the shoot summary states about where images were processed and stored."""

    policy: str
    processed_on: str
    locations: list[StorageLocation]
    dam_endpoint: str = ""

    def describe(self) -> str:
        """One paragraph for the summary."""
        parts = [f"Processed on host {self.processed_on} (residency policy: {self.policy})."]
        for loc in self.locations:
            where = (
                loc.kind
                if not loc.region
                else f"{loc.kind}, region {loc.region} ({loc.region_source})"
            )
            endpoint = f" via {loc.endpoint}" if loc.endpoint else ""
            parts.append(f"{loc.role}: {loc.uri} [{where}{endpoint}].")
        if self.dam_endpoint:
            parts.append(f"DAM endpoint: {self.dam_endpoint}.")
        return " ".join(parts)


def load_regions(path: Path) -> ResidencyRegions:
    """Read the EU/EEA region list."""
    try:
        return ResidencyRegions.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"Residency region file {path} cannot be used: {exc}") from None


def _endpoint_host(url: str | None) -> str:
    if not url:
        return ""
    parsed = urlparse(url if "://" in url else f"//{url}")
    return parsed.netloc.lower()


def bucket_region(uri: str) -> tuple[str, str]:
    """(region, source) of an s3:// URI's bucket, asking the server first."""
    loc = storage.locate(uri)
    bucket = loc.path.split("/", 1)[0]
    try:
        head = loc.fs.call_s3("head_bucket", Bucket=bucket)
        region = (
            head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region", "")
        )
        if region:
            return region, "reported by the server"
        constraint = loc.fs.call_s3("get_bucket_location", Bucket=bucket).get("LocationConstraint")
        if constraint:
            return str(constraint), "reported by the server"
    except FileNotFoundError:
        raise ConfigError(
            f"Bucket '{bucket}' of {uri} does not exist.", hint="Create it or fix the URI."
        ) from None
    except PermissionError as exc:
        raise ConfigError(
            f"Access to bucket '{bucket}' of {uri} was refused ({exc}).",
            hint="Check the S3 credentials (CUTLINE_S3_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID).",
        ) from None
    return "", ""


def assess(
    settings: CutlineSettings, roles: dict[str, str], dam_endpoint: str | None = None
) -> ResidencyReport:
    """Describe where each location lives; with residency 'eu', refuse what is outside.

    ``roles`` maps a role ('shoot', 'output', 'catalog') to its path or URI.
    """
    regions = load_regions(settings.residency_file) if settings.residency == "eu" else None
    allowed = {h.strip().lower() for h in settings.allowed_endpoints}
    locations = []
    for role, uri in roles.items():
        if storage.protocol_of(uri) == "file":
            locations.append(StorageLocation(role=role, uri=uri, kind="local disk"))
            continue
        endpoint = _endpoint_host(settings.s3_endpoint_url)
        region, source = (
            bucket_region(uri) if storage.protocol_of(uri) in {"s3", "s3a"} else ("", "")
        )
        if not region and settings.s3_region:
            region, source = settings.s3_region, "configured (the server reports none)"
        location = StorageLocation(
            role=role,
            uri=uri,
            kind="object storage",
            region=region,
            region_source=source,
            endpoint=endpoint,
        )
        locations.append(location)
        if regions is None:
            continue
        if not region:
            raise ConfigError(
                f"Residency 'eu': the region of the {role} location {uri} cannot be determined.",
                hint="Set CUTLINE_S3_REGION to the bucket's region, or use a server that reports it.",
            )
        if not regions.is_eu(region):
            raise ConfigError(
                f"Residency 'eu': the {role} location {uri} is in region '{region}' ({source}), outside the EU/EEA.",
                hint="Use a bucket in an EU/EEA region, or add the region to the residency file if it is one.",
            )
        if endpoint and endpoint not in allowed:
            raise ConfigError(
                f"Residency 'eu': the storage endpoint {endpoint} used for the {role} location is not in allowed_endpoints.",
                hint="Add it to CUTLINE_ALLOWED_ENDPOINTS if the studio has approved it.",
            )
    dam_host = _endpoint_host(dam_endpoint)
    if regions is not None and dam_host and dam_host not in allowed:
        raise ConfigError(
            f"Residency 'eu': the DAM endpoint {dam_host} is not in allowed_endpoints.",
            hint="Add it to CUTLINE_ALLOWED_ENDPOINTS if the studio has approved it.",
        )
    return ResidencyReport(
        policy=settings.residency,
        processed_on=socket.gethostname(),
        locations=locations,
        dam_endpoint=dam_host,
    )
