"""A wrong setting is one clear line naming the variable, never a traceback or a silent
fallback (an empty CUTLINE_DATA_ROOT would otherwise mean the current folder)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cutline.base.errors import ConfigError


def _cli(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutline", "stack-status"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CUTLINE_WORKERS": "lots"}, "CUTLINE_WORKERS='lots': Input should be a valid integer"),
        ({"CUTLINE_DATA_ROOT": ""}, "CUTLINE_DATA_ROOT='': is empty"),
        ({"CUTLINE_BATCH_ORDER": "random"}, "CUTLINE_BATCH_ORDER='random'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(env, words):
    result = _cli(**env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid setting(s): ")
    assert words in lines[0]


def test_a_bad_secret_is_named_without_its_value():
    from pydantic import ValidationError

    from cutline.base.settings import CutlineSettings, settings_error

    with pytest.raises(ValidationError) as info:
        CutlineSettings(dam_http_token=987654321, workers=0)
    message = str(settings_error(info.value))
    assert "CUTLINE_DAM_HTTP_TOKEN:" in message and "987654321" not in message
    assert "CUTLINE_WORKERS=0:" in message  # ordinary values are shown
    assert isinstance(settings_error(info.value), ConfigError)
