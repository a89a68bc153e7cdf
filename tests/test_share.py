"""Client links to a contact sheet: unguessable, scoped to one folder, read-only, and they
expire. Served by the real share server on a free port; the CLI issues and revokes them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cutline.base.settings import CutlineSettings
from cutline.services import share
from cutline.services.share import register_share, start_share_server
from tests.ports import free_port


@pytest.fixture
def served(tmp_path: Path):
    """A share server over its own data root, and a two-page contact sheet folder."""
    settings = CutlineSettings(data_root=tmp_path / "data", share_port=free_port())
    sheet = tmp_path / "out" / "JOB-1" / "contact-sheet"
    (sheet / "thumbs").mkdir(parents=True)
    (sheet / "index.html").write_text("<a href='page-001.html'>SKU-1</a>")
    (sheet / "page-001.html").write_text("<img src='thumbs/SKU-1.png'>")
    (sheet / "thumbs" / "SKU-1.png").write_bytes(b"\x89PNG fake")
    (sheet.parent / "ledger.csv").write_text("secret ledger")
    server = start_share_server(settings)
    yield settings, sheet
    server.shutdown()
    server.server_close()


def _get(url: str, method: str = "GET") -> tuple[int, bytes]:
    data = b"x" if method != "GET" else None
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data, method=method), timeout=5
        ) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_link_opens_its_sheet_and_nothing_else(served) -> None:
    settings, sheet = served
    link = register_share(settings, "JOB-1", str(sheet))
    assert link is not None
    token = link.url.split("/s/", 1)[1].split("/", 1)[0]
    assert len(token) == 43 and "JOB-1" not in link.url  # 256 random bits; no job id to guess
    assert _get(link.url) == (200, b"<a href='page-001.html'>SKU-1</a>")
    assert _get(link.url.replace("index.html", "thumbs/SKU-1.png"))[0] == 200
    base = link.url.split("/s/", 1)[0]
    for path in (
        f"/s/{token}/../ledger.csv",
        f"/s/{token}/%2e%2e/ledger.csv",
        f"/s/{token}/ledger.csv",
        "/shoots/JOB-1/index.html",  # the old, guessable form of link
        # one character off: the first (six bits of the secret; the last one carries padding
        # bits, and a fixed replacement letter is the token's own letter 1 time in 16)
        f"/s/{'B' if token[0] == 'A' else 'A'}{token[1:]}/index.html",
        f"/s/{token}x/index.html",
        "/",
    ):
        assert _get(base + path)[0] == 404, path
    assert _get(link.url, "POST")[0] == 405
    registry = settings.data_root / "shares"
    assert not any(token in p.read_text() for p in registry.rglob("*") if p.is_file())


def test_an_expired_link_says_so_and_a_new_one_works(served) -> None:
    settings, sheet = served
    long_ago = datetime.now(UTC) - timedelta(days=30)
    old = register_share(settings, "JOB-1", str(sheet), now=long_ago)
    assert old is not None and old.expires_at < datetime.now(UTC)
    status, body = _get(old.url)
    assert status == 410 and b"cutline signoff link JOB-1" in body

    env = {**os.environ, "CUTLINE_DATA_ROOT": str(settings.data_root)}
    env["CUTLINE_SHARE_PORT"] = str(settings.resolved_share_port)
    issue = subprocess.run(
        [sys.executable, "-m", "cutline", "signoff", "link", "JOB-1", "--days", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert issue.returncode == 0, issue.stderr
    url = issue.stdout.split()[0]
    assert url != old.url and "valid until" in issue.stdout
    assert _get(url)[0] == 200
    assert len(list((settings.data_root / "shares").glob("*.json"))) == 1  # the expired one is gone

    revoke = subprocess.run(
        [sys.executable, "-m", "cutline", "signoff", "link", "JOB-1", "--revoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert revoke.returncode == 0 and "revoked 1 link(s)" in revoke.stdout
    assert _get(url)[0] == 404


def test_no_link_for_a_shoot_never_shared(served) -> None:
    settings, _ = served
    env = {**os.environ, "CUTLINE_DATA_ROOT": str(settings.data_root)}
    issue = subprocess.run(
        [sys.executable, "-m", "cutline", "signoff", "link", "NEVER-1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert issue.returncode == 2 and "no shared contact sheet yet" in issue.stderr


def _cli(settings: CutlineSettings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUTLINE_DATA_ROOT": str(settings.data_root)}
    env["CUTLINE_SHARE_PORT"] = str(settings.resolved_share_port)
    return subprocess.run(
        [sys.executable, "-m", "cutline", "signoff", "link", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _review_page(tmp: Path, n: int) -> dict:
    page = tmp / "review-pages" / f"run-{n}"
    page.mkdir(parents=True)
    (page / "index.html").write_text(f"review {n}")
    source = tmp / "shoot" / f"IMG_{n}.jpg"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(b"jpeg")
    return {"folder": str(page), "files": {"source.jpg": str(source)}}


def test_a_new_link_for_the_client_is_to_the_contact_sheet_not_a_later_review_page(
    served, tmp_path: Path
) -> None:
    """A send-back after sign-off shares a review page later than the contact sheet: the
    producer's `signoff link` still hands the client the contact sheet, and `--revoke` stops
    the review pages' links too."""
    settings, sheet = served
    assert register_share(settings, "JOB-1", str(sheet)) is not None
    pages = [register_share(settings, "JOB-1", **_review_page(tmp_path, n)) for n in range(3)]
    issue = _cli(settings, "JOB-1")
    assert issue.returncode == 0, issue.stderr
    assert _get(issue.stdout.split()[0]) == (200, b"<a href='page-001.html'>SKU-1</a>")
    assert all(
        page is not None and _get(page.url) == (200, b"review %d" % n)
        for n, page in enumerate(pages)
    )

    assert "revoked 5 link(s)" in _cli(settings, "JOB-1", "--revoke").stdout
    assert all(_get(page.url)[0] == 404 for page in pages if page)
    assert _get(issue.stdout.split()[0])[0] == 404


def test_a_shoot_with_only_review_pages_has_no_client_link_to_renew(served, tmp_path) -> None:
    settings, _ = served
    register_share(settings, "JOB-2", **_review_page(tmp_path, 1))
    issue = _cli(settings, "JOB-2")
    assert issue.returncode == 2 and "no shared contact sheet yet" in issue.stderr


def test_issuing_a_review_page_link_reads_no_other_link(served, tmp_path, monkeypatch) -> None:
    """A large shoot issues one link per review page: each must cost the same, not read the
    registry's every link (thousands after a few shoots)."""
    settings, sheet = served
    register_share(settings, "JOB-1", str(sheet))
    for n in range(20):
        register_share(settings, "JOB-1", **_review_page(tmp_path, n))
    reads = []
    original = share.ShareGrant.model_validate_json
    monkeypatch.setattr(
        share.ShareGrant,
        "model_validate_json",
        lambda *a, **k: reads.append(1) or original(*a, **k),
    )
    link = register_share(settings, "JOB-1", **_review_page(tmp_path, 99))
    assert link is not None and reads == []
    assert _get(link.url) == (200, b"review 99")


def test_links_issued_before_the_index_existed_are_still_renewed_and_revoked(
    served, tmp_path: Path
) -> None:
    """A studio upgrading keeps its issued links: the registry is indexed on first use, and
    `--revoke` stops links issued by the older version."""
    settings, sheet = served
    old_sheet = register_share(settings, "JOB-1", str(sheet))
    old_page = register_share(settings, "JOB-1", **_review_page(tmp_path, 1))
    other = register_share(settings, "JOB-9", str(sheet))
    registry = settings.data_root / "shares"
    for grant in registry.glob("*.json"):  # as the older version wrote them: no kind, no index
        data = json.loads(grant.read_text())
        data.pop("kind")
        grant.write_text(json.dumps(data))
    shutil.rmtree(registry / "jobs")
    assert old_sheet and old_page and other

    issue = _cli(settings, "JOB-1")
    assert issue.returncode == 0, issue.stderr
    assert _get(issue.stdout.split()[0]) == (200, b"<a href='page-001.html'>SKU-1</a>")
    assert "revoked 3 link(s)" in _cli(settings, "JOB-1", "--revoke").stdout
    assert _get(old_sheet.url)[0] == _get(old_page.url)[0] == 404
    assert _get(other.url)[0] == 200


@pytest.mark.parametrize("swap", ["symlink", "hardlink", "thumbs-folder", "sheet-folder", "fifo"])
def test_a_sheet_file_swapped_after_the_link_was_issued_is_not_served(
    served, tmp_path: Path, swap: str
) -> None:
    """Issue 27 item 2 for the shared folder itself: a page or thumbnail of the sheet, or a
    folder on its way, swapped for a link (or a hard link, or a FIFO) after the link was
    issued is refused when served: 404 at once, nothing of the other file sent."""
    settings, sheet = served
    link = register_share(settings, "JOB-1", str(sheet))
    assert link is not None
    page = link.url.replace("index.html", "page-001.html")
    thumb = link.url.replace("index.html", "thumbs/SKU-1.png")
    assert _get(page)[0] == _get(thumb)[0] == 200
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clients")
    decoy = tmp_path / "decoy"
    (decoy / "thumbs").mkdir(parents=True)
    for name in ("index.html", "page-001.html", "thumbs/SKU-1.png"):
        (decoy / name).write_text("not for clients")
    if swap == "symlink":
        for name in ("page-001.html", "thumbs/SKU-1.png"):
            (sheet / name).unlink()
            (sheet / name).symlink_to(secret)
    elif swap == "hardlink":
        for name in ("page-001.html", "thumbs/SKU-1.png"):
            (sheet / name).unlink()
            os.link(secret, sheet / name)
    elif swap == "thumbs-folder":
        (sheet / "thumbs").rename(sheet / "thumbs.old")
        (sheet / "thumbs").symlink_to(decoy / "thumbs")
        (sheet / "page-001.html").unlink()
        (sheet / "page-001.html").symlink_to(decoy / "page-001.html")
    elif swap == "sheet-folder":
        sheet.rename(sheet.with_name("sheet.old"))
        sheet.symlink_to(decoy)
    else:
        for name in ("page-001.html", "thumbs/SKU-1.png"):
            (sheet / name).unlink()
            os.mkfifo(sheet / name)
    started = time.monotonic()
    for url in (page, thumb):
        status, body = _get(url)
        assert status == 404 and b"not for clients" not in body, (url, status)
    assert time.monotonic() - started < 5  # a FIFO is never opened for a blocking read
    expected = 404 if swap == "sheet-folder" else 200
    assert _get(link.url)[0] == expected


def _threads() -> int:
    return threading.active_count()


def test_hundreds_of_idle_connections_take_no_threads_and_block_no_one(tmp_path: Path) -> None:
    """Issue 27 item 14: 300 idle connections made 308 share-server threads. Idle and slow
    (slowloris) connections cost no thread and are dropped after the head timeout; a normal
    request meanwhile is answered at once."""
    settings = CutlineSettings(data_root=tmp_path / "data", share_port=free_port())
    sheet = tmp_path / "sheet"
    sheet.mkdir()
    (sheet / "index.html").write_text("sheet")
    before = _threads()
    server = start_share_server(settings, head_seconds=2.0)
    try:
        started = _threads()
        assert started - before <= 20  # the fixed workers and the one accepting thread
        link = register_share(settings, "JOB-1", str(sheet))
        assert link is not None
        address = ("127.0.0.1", settings.resolved_share_port)
        idle = [socket.create_connection(address, timeout=5) for _ in range(300)]
        slow = socket.create_connection(address, timeout=5)
        slow.sendall(b"GET /s/")
        time.sleep(0.5)
        assert _threads() == started, "idle connections took threads"
        t0 = time.monotonic()
        assert _get(link.url) == (200, b"sheet")
        assert time.monotonic() - t0 < 1.0
        # the slow client trickles its head; it is answered 408 and dropped all the same
        answer = b""
        with contextlib.suppress(OSError):
            for _ in range(40):
                slow.sendall(b"x")
                time.sleep(0.1)
        slow.settimeout(5)
        with contextlib.suppress(OSError):
            answer = slow.recv(200)
        assert answer == b"" or answer.startswith(b"HTTP/1.0 408"), answer
        for conn in idle:  # each was dropped: the oldest to make room, the rest after 2 s
            conn.settimeout(5)
            try:
                got = conn.recv(200)
            except ConnectionResetError:
                got = b""
            assert got == b"" or got.startswith(b"HTTP/1.0 408"), got
            conn.close()
        slow.close()
        assert _threads() == started
        assert _get(link.url) == (200, b"sheet")
    finally:
        server.shutdown()
        server.server_close()
