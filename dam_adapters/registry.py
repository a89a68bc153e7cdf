"""Choose a DAM adapter by name; import it only when named."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from cutline.errors import ConfigError
from cutline.settings import CutlineSettings
from dam_adapters.base import DamAdapter


def _local_catalog(settings: CutlineSettings) -> DamAdapter:
    from dam_adapters.local_catalog import LocalCatalog

    return LocalCatalog(settings.resolved_catalog_dir)


# name -> (factory, optional module it needs, pip extra that installs it)
_ADAPTERS: dict[str, tuple[Callable[[CutlineSettings], DamAdapter], str | None, str | None]] = {
    "local-catalog": (_local_catalog, None, None),
}


def known_adapters() -> list[str]:
    """Names accepted by the ``dam_adapter`` setting."""
    return sorted(_ADAPTERS)


def create_adapter(settings: CutlineSettings) -> DamAdapter:
    """The adapter named in settings, or a ConfigError listing the known names."""
    entry = _ADAPTERS.get(settings.dam_adapter)
    if entry is None:
        raise ConfigError(
            f"Unknown DAM adapter '{settings.dam_adapter}'.",
            hint=f"Set CUTLINE_DAM_ADAPTER to one of: {', '.join(known_adapters())}.",
        )
    factory, needs, extra = entry
    if needs is not None:
        try:
            importlib.import_module(needs)
        except ImportError:
            raise ConfigError(
                f"DAM adapter '{settings.dam_adapter}' needs the package '{needs}'.",
                hint=f"Install it with: pip install 'cutline[{extra}]'.",
            ) from None
    return factory(settings)
