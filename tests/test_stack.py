"""The local stack: a second stack on the same machine never attaches to the first's server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_a_second_stack_refuses_a_server_that_is_not_its_own(prefect_server, settings, tmp_path):
    from cutline.base.settings import CutlineSettings
    from cutline.ops import stack

    other = tmp_path / "other-stack"
    result = subprocess.run(
        [sys.executable, "-m", "cutline", "up"],
        env={**os.environ, "CUTLINE_DATA_ROOT": str(other)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr
    assert f"Port {settings.server_port} is taken by the Cutline stack with data root" in message
    assert str(settings.data_root) in message and str(other) in message
    assert f"CUTLINE_SERVER_PORT={settings.server_port + 1}" in message
    # No worker of the second stack was started against the first one's server.
    assert stack._read_pid(stack._pid_file(CutlineSettings(data_root=other), "worker")) is None
    # The first stack itself still comes up as before.
    assert stack.up(settings).healthy
