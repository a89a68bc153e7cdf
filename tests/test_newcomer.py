"""What a newcomer meets: the commands the CLI suggests can be pasted as they are (after
`scripts/setup.sh` only `.venv/bin/cutline` exists, so a hint saying `cutline status JOB` would
fail), and Cutline leaves nothing in the home folder when its data root is elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutline.ops.terminal import invoked_as

ROOT = Path(__file__).resolve().parent.parent


def test_a_hint_names_the_program_as_it_was_run(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing named cutline on PATH
    monkeypatch.setattr(sys, "argv", [str(ROOT / ".venv" / "bin" / "cutline")])
    assert invoked_as() == os.path.join(".venv", "bin", "cutline")
    monkeypatch.setattr(sys, "argv", [str(ROOT / "cutline" / "__main__.py")])
    assert invoked_as().endswith(" -m cutline")
    (tmp_path / "cutline").symlink_to(ROOT / ".venv" / "bin" / "cutline")
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "cutline")])
    assert invoked_as() == "cutline"  # on PATH: the short name works


@pytest.mark.slow
def test_the_setup_virtualenv_hints_the_path_a_newcomer_typed(prefect_server):
    """Run as README's first command does, `.venv/bin/cutline`, the hint says the same."""
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [".venv/bin/cutline", "signoff", "resume", "NO-SUCH-JOB", "--approve", "--by", "Pat"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode != 0
    assert "`.venv/bin/cutline signoff list`" in result.stderr, result.stderr


def _prefect_home_of_the_cli(home: Path, data_root: Path) -> str:
    """PREFECT_HOME as the CLI's process sees it once Prefect is imported."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_HOME"}
    env.update(HOME=str(home), CUTLINE_DATA_ROOT=str(data_root))
    code = "import cutline.ops.cli, prefect.settings as s; print(s.PREFECT_HOME.value())"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_prefect_state_lives_under_the_data_root_not_in_the_home_folder(tmp_path):
    home, data_root = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    assert _prefect_home_of_the_cli(home, data_root) == str(data_root / "prefect")
    assert not (home / ".prefect").exists()
    # Someone with a Prefect home of their own (profiles naming the studio's server) keeps it.
    (home / ".prefect").mkdir()
    assert _prefect_home_of_the_cli(home, data_root) == str(home / ".prefect")
