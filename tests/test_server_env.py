"""The embedded server's own settings: what Cutline changes from Prefect's defaults, and why."""

from __future__ import annotations

from pathlib import Path

LOOP = "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS"


def test_the_server_reads_waiting_runs_for_expired_pauses_every_two_minutes_not_5_s(
    settings, prefect_server, monkeypatch
):
    """Prefect's check for expired pauses reads every paused run each time; with thousands of
    reviews waiting (no timeout) a check every 5 s kept the idle server busy."""
    from prefect.settings import Settings

    from cutline.ops import stack

    assert settings.server_pause_expiry_check_seconds == 120
    monkeypatch.setenv(LOOP, stack.server_env(settings)[LOOP])
    assert Settings().server.services.pause_expirations.loop_seconds == 120
    # ...and the running embedded server was started with it.
    pid = stack.status(settings).pid
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"{LOOP}=120.0".encode() in environ
