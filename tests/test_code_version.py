"""The code version a shoot freezes tells two copies of Cutline apart by their sources, not
only by the release number a hot fix would keep."""

from __future__ import annotations

import re
import shutil

from cutline.base.code_version import PACKAGES, code_version, source_hash
from cutline.base.settings import PROJECT_ROOT


def test_two_copies_match_until_one_file_changes(tmp_path):
    for name in PACKAGES:
        shutil.copytree(
            PROJECT_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    copies = {name: tmp_path / name for name in PACKAGES}
    here = {name: PROJECT_ROOT / name for name in PACKAGES}
    assert source_hash(copies) == source_hash(here)
    assert code_version().endswith("+" + source_hash(here))
    assert re.fullmatch(r"\d+\.\d+\.\d+\+[0-9a-f]{12}", code_version())

    (tmp_path / "tasks" / "route.py").write_text(
        (tmp_path / "tasks" / "route.py").read_text() + "\n# a hot fix on one host\n"
    )
    assert source_hash(copies) != source_hash(here)
    (tmp_path / "tasks" / "route.py").rename(tmp_path / "tasks" / "route2.py")
    assert source_hash(copies) != source_hash(here)
