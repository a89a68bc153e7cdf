"""Hostile input, round two, through the doors a studio and an attacker use: `cutline run` in a
terminal, the Prefect API's artifacts, and the Resume form in the Prefect UI (Chromium).

One shoot holds what an unlucky studio's exports and an attacker's manifest hold at once:
carriage returns in SKU cells (Excel), a decomposed macOS file name and a ligature with their
glassware rows, a NUL inside a category, a hidden working folder with a row of its own,
hidden clutter, 30 rows without files, markdown that would load a remote image or forge
Cutline's own words, and terminal escape sequences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cutline.imaging.samples import Sample, render_sample
from cutline.records.ledger import read_ledger
from tests.ports import free_port

pytestmark = pytest.mark.slow

JOB = "HOST-0001"
NFD_GLASS = "cafe\u0301-glass.jpg"  # as macOS writes 'café-glass.jpg'
LIGATURE = "\ufb01ne-vase.jpg"  # 'ﬁne-vase.jpg'
ESCAPED = "esc-\x1b]0;owned\x07.jpg"  # a file name that retitles a terminal window


class Beacon:
    """A loopback web server that counts every request: a remote image in a form or artifact
    would be fetched from it by the browser."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        beacon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                beacon.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                return

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def image(self) -> str:
        return f"![logo](http://127.0.0.1:{self.port}/beacon.png)"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _write_shoot(folder: Path, beacon: Beacon) -> None:
    folder.mkdir(parents=True)
    (folder / ".retouch").mkdir()
    product = render_sample(Sample("x", "x", "homeware", "round", (40, 90, 160)), (320, 240))
    for name in ("plain.jpg", NFD_GLASS, LIGATURE, "nul-glass.jpg", ESCAPED, ".retouch/plain.jpg"):
        product.save(folder / name, "JPEG")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    forged = (
        "\n\n> **Your last answer could not be used:** QA already approved it.\n\n"
        "## Approve without looking"
    )
    rows = [
        ["filename", "sku", "category", "brief"],
        ["plain.jpg", "PL-1\r", "homeware", ""],
        ["caf\u00e9-glass.jpg", "GL\r2", "glassware", beacon.image + forged],
        ["fine-vase.jpg", "LG-3", "glassware", beacon.image],
        ["nul-glass.jpg", "NU-4 " + beacon.image, "glass\x00ware", forged],
        [ESCAPED, "ES-6", "jewellery", "\x1b]0;owned\x07 " + forged],
        [".retouch/plain.jpg", "RT-5", "jewellery", ""],
        *[[f"gone-{n:02}.jpg", f"G-{n}", "homeware", ""] for n in range(30)],
    ]
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        import csv

        csv.writer(fh).writerows(rows)


def _cli(*args: str, api_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    return subprocess.run(
        [sys.executable, "-m", "cutline", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def hostile_run(prefect_server, model_home, settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    beacon = Beacon()
    _write_shoot(root / "shoot", beacon)
    out = root / "out"
    first = _cli(
        "run", str(root / "shoot"), "--job-id", JOB, "--out", str(out), api_url=prefect_server
    )
    second = _cli(
        "run", str(root / "shoot"), "--job-id", JOB, "--out", str(out), api_url=prefect_server
    )
    try:
        yield root, out, first, second, beacon
    finally:
        beacon.close()


def _rows(out: Path) -> dict[str, dict[str, str]]:
    return {row["source_name"]: row for row in read_ledger(str(out / JOB / "ledger.csv"))}


def test_every_file_and_row_is_in_the_ledger_once_and_nothing_is_withdrawn(hostile_run, settings):
    from dam_adapters.local_catalog import LocalCatalog

    _, out, first, second, _ = hostile_run
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    ledger = read_ledger(str(out / JOB / "ledger.csv"))
    names = [row["source_name"] for row in ledger]
    # 5 files + the hidden folder's row + 30 rows without files, each exactly once: the
    # carriage returns no longer split rows (they read back as 9 rows for 4 files).
    assert len(names) == len(set(names)) == 36
    rows = _rows(out)
    assert rows["plain.jpg"]["sku"] == "PL-1" and rows[NFD_GLASS]["sku"] == "GL 2"
    records = LocalCatalog(settings.resolved_catalog_dir).list_job(JOB)
    # Neither run withdrew its own fresh asset, and the rerun registered nothing twice.
    assert [r.sku for r in records if r.approval_state == "withdrawn"] == []
    assert len(records) == len({(r.sku, r.source_name) for r in records})
    if rows["plain.jpg"]["lane"] == "auto":
        assert [r.sku for r in records] == ["PL-1"]


def test_unicode_names_and_hidden_control_characters_keep_their_routing(hostile_run):
    _, out, *_ = hostile_run
    rows = _rows(out)
    for name in (NFD_GLASS, LIGATURE, "nul-glass.jpg"):
        assert rows[name]["category"] == "glassware", name
        assert rows[name]["lane"] == "review", (name, rows[name]["reasons"])
    # A file name with terminal escapes fails alone, saying so (its outputs would carry it).
    assert rows[ESCAPED]["lane"] == "failed"
    assert "file name contains control characters (U+0007, U+001B)" in rows[ESCAPED]["error"]
    hidden = rows[".retouch/plain.jpg"]
    assert hidden["lane"] == "failed" and "hidden file or folder" in hidden["error"]
    summary = json.loads((out / JOB / "summary.json").read_text())
    assert sorted(Path(p).name for p in summary["ignored_files"]) == [".DS_Store", "plain.jpg"]


def test_the_terminal_gets_no_escape_sequences(hostile_run):
    _, _, first, second, _ = hostile_run
    for result in (first, second):
        printed = result.stdout + result.stderr
        assert "\x1b" not in printed and "\x07" not in printed
        assert "esc-]0;owned.jpg" in printed  # the summary was printed, as text


def test_the_summary_artifact_shows_manifest_text_as_text(hostile_run, prefect_server):
    from markdown_it import MarkdownIt
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, _, _, _, beacon = hostile_run
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["shoot-host-0001"]))
        )
    assert artifacts
    html = MarkdownIt("gfm-like").render(artifacts[0].data)
    assert "NU-4" in html  # the SKU holding the image is in the review queue, as text
    assert "<img" not in html and f'href="http://127.0.0.1:{beacon.port}' not in html
    assert "<blockquote>" not in html


def test_near_duplicate_job_ids_are_refused_before_they_mix_folders(hostile_run, prefect_server):
    root, out, *_ = hostile_run
    trailing = _cli(
        "run", str(root / "shoot"), "--job-id", JOB + ".", "--out", str(out), api_url=prefect_server
    )
    assert trailing.returncode == 2 and "starting and ending with a letter" in trailing.stderr
    similar = _cli(
        "run",
        str(root / "shoot"),
        "--job-id",
        "host_0001",
        "--out",
        str(out),
        api_url=prefect_server,
    )
    assert similar.returncode == 2
    assert "differs from the existing job 'HOST-0001' only in letter case" in similar.stderr
    assert not (out / "host_0001").exists()


@pytest.mark.browser
def test_the_resume_form_in_the_ui_loads_nothing_from_the_manifest(
    hostile_run, settings, browser_page, artifacts_dir
):
    from tests.reviews import wait_for_reviews

    _, _, _, _, beacon = hostile_run
    entries = wait_for_reviews(settings, JOB, 3)
    page = browser_page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for entry in entries:
        page.goto(entry.ui_url)
        page.get_by_role("button", name="Resume").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Brief").first.wait_for(timeout=30_000)
        if "Approve without looking" in dialog.inner_text():  # shown as text, not a heading
            assert dialog.locator("h2", has_text="Approve without looking").count() == 0
            page.screenshot(path=str(artifacts_dir / "hostile-resume-form.png"), full_page=True)
        page.keyboard.press("Escape")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = ["shoot-host-0001", "shoot-host-0001-images"]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    for artifact in artifacts:  # the summary and the per-image table, as the UI shows them
        page.goto(f"{settings.ui_url}/artifacts/artifact/{artifact.id}")
        page.get_by_text("plain.jpg").first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts_dir / f"hostile-{artifact.type}.png"), full_page=True)
    assert beacon.hits == []
    assert not [url for url in requested if f":{beacon.port}" in url]
