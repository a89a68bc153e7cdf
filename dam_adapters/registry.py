"""Choose a DAM adapter by name; import it only when named."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from cutline.base.errors import ConfigError
from cutline.base.settings import CutlineSettings
from dam_adapters.base import DamAdapter


def _local_catalog(settings: CutlineSettings, output_root: str | None) -> DamAdapter:
    from dam_adapters.local_catalog import LocalCatalog

    return LocalCatalog(settings.resolved_catalog_dir)


def _object_store(settings: CutlineSettings, output_root: str | None) -> DamAdapter:
    from cutline.base import storage
    from dam_adapters.object_store import ObjectStoreCatalog

    root = settings.object_catalog_root or storage.join(
        output_root or str(settings.resolved_output_root), "_catalog"
    )
    return ObjectStoreCatalog(root)


def _http(settings: CutlineSettings, output_root: str | None) -> DamAdapter:
    from dam_adapters.http import HttpDam

    if not settings.dam_http_base_url:
        raise ConfigError(
            "DAM adapter 'http' needs a base URL.",
            hint="Set CUTLINE_DAM_HTTP_BASE_URL to the DAM's API root.",
        )
    return HttpDam.from_file(
        settings.dam_http_base_url,
        settings.dam_http_mapping_file,
        auth_header=settings.dam_http_auth_header,
        auth_scheme=settings.dam_http_auth_scheme,
        token=settings.dam_http_token.get_secret_value() if settings.dam_http_token else None,
        timeout=settings.dam_http_timeout,
        max_retries=settings.dam_http_max_retries,
        max_backoff=settings.dam_http_max_backoff,
    )


AdapterFactory = Callable[[CutlineSettings, str | None], DamAdapter]

# name -> (factory, optional module it needs, pip package that installs it)
_ADAPTERS: dict[str, tuple[AdapterFactory, str | None, str | None]] = {
    "local-catalog": (_local_catalog, None, None),
    "object-store": (_object_store, None, None),
    "http": (_http, "httpx", "httpx"),
}


def known_adapters() -> list[str]:
    """Names accepted by the ``dam_adapter`` setting."""
    return sorted(_ADAPTERS)


def create_adapter(settings: CutlineSettings, output_root: str | None = None) -> DamAdapter:
    """The adapter named in settings, or a ConfigError listing the known names.

    ``output_root`` is the shoot's output root, where the object-store catalog lives
    unless CUTLINE_OBJECT_CATALOG_ROOT says otherwise.
    """
    entry = _ADAPTERS.get(settings.dam_adapter)
    if entry is None:
        raise ConfigError(
            f"Unknown DAM adapter '{settings.dam_adapter}'.",
            hint=f"Set CUTLINE_DAM_ADAPTER to one of: {', '.join(known_adapters())}.",
        )
    factory, needs, package = entry
    if needs is not None:
        try:
            importlib.import_module(needs)
        except ImportError:
            raise ConfigError(
                f"DAM adapter '{settings.dam_adapter}' needs the Python package '{package}', which is not installed.",
                hint=f"Install it with: pip install {package}",
            ) from None
    return factory(settings, output_root)
