"""Which Cutline code this process runs: the release and a hash of the source itself.

Each worker host runs the flows from its own install of Cutline (README, "Run it on several
machines"). A host left on an older copy would cut out, route and record its batches of a
shoot differently from the rest, and nothing would say so. The shoot freezes the code
version of the host that starts it into its run config; every batch, on whichever host,
compares it with its own and refuses to run on other code (`flows.batch_task.check_batch`).

The release number alone would not do: a hot fix copied onto one host keeps the number. So
the version carries a hash of every Python source file of Cutline's packages, read where
they are imported from (a checkout or an installed package alike).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import import_module
from pathlib import Path

# Cutline's own top-level packages: the code a batch runs.
PACKAGES = ("cutline", "flows", "tasks", "dam_adapters", "rules")


def source_hash(folders: dict[str, Path]) -> str:
    """12 hex digits of the Python sources in ``folders`` (package name -> its folder): the
    same for two copies exactly when every file's path and bytes are."""
    digest = hashlib.sha256()
    for package, folder in sorted(folders.items()):
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(f"{package}/{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:12]


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<release>+<source hash>``, e.g. ``0.1.0+3f9c2a1b7d04``, of the Cutline this
    process imported."""
    from cutline import __version__

    folders = {name: Path(import_module(name).__file__).parent for name in PACKAGES}
    return f"{__version__}+{source_hash(folders)}"
