"""The doors and the machinery around them: the CLI, the local stack and its worker, shoot status.

Importing Prefect creates its home folder (``~/.prefect`` unless PREFECT_HOME says otherwise).
Cutline keeps its state under its data root (CUTLINE_DATA_ROOT), so before anything here imports
Prefect, PREFECT_HOME defaults to ``<data root>/prefect``, the stack's own Prefect home, unless
the person already has a Prefect home of their own (``~/.prefect`` with their profiles, say one
pointing at the studio's server): that one is kept.
"""

import os
from pathlib import Path


def _prefect_home_under_the_data_root() -> None:
    if "PREFECT_HOME" in os.environ or (Path.home() / ".prefect").exists():
        return
    from cutline.base.errors import ConfigError
    from cutline.base.settings import get_settings

    try:
        os.environ["PREFECT_HOME"] = str(get_settings().prefect_home)
    except ConfigError:
        return  # bad settings: the CLI says so, in one line, once it runs


_prefect_home_under_the_data_root()
