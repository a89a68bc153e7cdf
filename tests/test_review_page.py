"""A review's page serves that review's own files and nothing else: a manifest's free-text
reference column naming a system file, or a symlink in the shoot pointing out of it, is
never handed to whoever holds the link. Real share server, real files."""

from __future__ import annotations

import os
import resource
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from cutline.base.settings import CutlineSettings
from cutline.domain.items import ImageItem
from cutline.services.review_page import publish_review_page
from cutline.services.share import start_share_server
from tests.ports import free_port


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def review(tmp_path: Path):
    shoot, job = tmp_path / "shoot", tmp_path / "out" / "JOB-1"
    (job / "masks").mkdir(parents=True)
    shoot.mkdir()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(shoot / "a.jpg")
    Image.new("L", (64, 48), 255).save(job / "masks" / "a.png")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clients")
    settings = CutlineSettings(data_root=tmp_path / "data", share_port=free_port())
    server = start_share_server(settings)
    yield settings, shoot, job, secret
    server.shutdown()
    server.server_close()


def _item(shoot: Path, job: Path, reference: str) -> ImageItem:
    return ImageItem(
        index=0,
        source=str(shoot / "a.jpg"),
        source_name="a.jpg",
        image_id="a",
        sku="SKU-1",
        mask=str(job / "masks" / "a.png"),
        reference=reference,
    )


@pytest.mark.parametrize("kind", ["absolute", "symlink", "dotdot"])
def test_a_reference_outside_the_shoot_is_never_served(review, kind) -> None:
    settings, shoot, job, secret = review
    if kind == "absolute":
        reference = str(secret)
    elif kind == "symlink":
        (shoot / "ref.txt").symlink_to(secret)
        reference = "ref.txt"
    else:
        reference = "../secret.txt"
    links = publish_review_page(
        settings,
        _item(shoot, job, reference),
        "JOB-1",
        "run-1",
        "http://ui/run",
        10**8,
        roots=[str(shoot), str(job)],
    )
    assert "reference" not in links
    base = links["page"].rsplit("/", 1)[0]
    assert _status(f"{base}/reference.txt") == 404
    assert _status(links["source"]) == 200 and _status(links["mask"]) == 200
    assert _status(links["preview"]) == 200


def test_a_reference_in_the_shoot_is_served(review) -> None:
    settings, shoot, job, _ = review
    Image.new("RGB", (8, 8)).save(shoot / "look.png")
    links = publish_review_page(
        settings,
        _item(shoot, job, "look.png"),
        "JOB-1",
        "run-2",
        "http://ui/run",
        10**8,
        roots=[str(shoot), str(job)],
    )
    assert _status(links["reference"]) == 200


def _publish(settings: CutlineSettings, item: ImageItem, shoot: Path, job: Path, run: str):
    return publish_review_page(
        settings, item, "JOB-1", run, "http://ui/run", 10**8, roots=[str(shoot), str(job)]
    )


def _fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _swap_for_link(path: Path, target: Path) -> None:
    """What someone who can write in the shoot does after the link is issued."""
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("swap", ["symlink", "hardlink", "other-file", "parent-folder", "fifo"])
def test_a_file_swapped_after_the_link_was_issued_is_not_served(review, swap) -> None:
    """Issue 27 item 2: the reference (in the shoot) and the mask (in the job folder) are
    checked when served, not only when the link is made: a link, another file, a folder on
    the way swapped for a link, or a FIFO is refused (404, nothing of it sent, no hang)."""
    settings, shoot, job, secret = review
    (shoot / "refs").mkdir()
    Image.new("RGB", (8, 8)).save(shoot / "refs" / "look.png")
    links = _publish(settings, _item(shoot, job, "refs/look.png"), shoot, job, f"run-{swap}")
    assert _status(links["reference"]) == 200 and _status(links["mask"]) == 200
    reference, mask = shoot / "refs" / "look.png", job / "masks" / "a.png"
    if swap == "symlink":
        _swap_for_link(reference, secret)
        _swap_for_link(mask, secret)
    elif swap == "hardlink":
        for path in (reference, mask):
            path.unlink()
            os.link(secret, path)
    elif swap == "other-file":  # a copy of something else, renamed into place
        for path in (reference, mask):
            (path.parent / "tmp").write_bytes(secret.read_bytes())
            (path.parent / "tmp").replace(path)
    elif swap == "parent-folder":  # the folders themselves become links to a look-alike
        decoy = secret.parent / "decoy"
        (decoy / "masks").mkdir(parents=True)
        (decoy / "look.png").write_bytes(secret.read_bytes())
        (decoy / "masks" / "a.png").write_bytes(secret.read_bytes())
        (shoot / "refs").rename(shoot / "refs.old")
        (shoot / "refs").symlink_to(decoy)
        (job / "masks").rename(job / "masks.old")
        (job / "masks").symlink_to(decoy / "masks")
    else:
        for path in (reference, mask):
            path.unlink()
            os.mkfifo(path)
    started = time.monotonic()
    for name in ("reference", "mask"):
        status, body, _ = _fetch(links[name])
        assert status == 404, (name, status)
        assert b"not for clients" not in body
        assert b"ask the studio for a new link" in body or b"no longer there" in body
    assert time.monotonic() - started < 5  # a FIFO is never opened for a blocking read
    assert _status(links["source"]) == 200 and _status(links["page"]) == 200


def test_a_hard_link_to_someone_elses_file_is_never_shared(review) -> None:
    """A hard link inside the shoot to a file of another owner (how /etc/shadow would be
    linked in) is no file of the shoot: not offered, and refused if it was."""
    if os.geteuid() != 0:
        pytest.skip("making a file of another owner needs root")
    settings, shoot, job, secret = review
    os.chown(secret, 4321, 4321)
    os.link(secret, shoot / "look.png")
    links = _publish(settings, _item(shoot, job, "look.png"), shoot, job, "run-hard")
    assert "reference" not in links
    assert _status(links["source"]) == 200
    # a link issued for it anyway (by an older version, or a race) does not open it either
    from cutline.services.share import register_share

    with pytest.raises(ValueError, match="hard links"):
        register_share(
            settings, "JOB-1", str(job), files={"reference.png": str(shoot / "look.png")}
        )


def test_a_download_is_named_after_its_file_never_after_the_request(review) -> None:
    """Issue 27 item 14: `Content-Disposition` came from the request path, query included.
    It names the served file (its own name, RFC 6266 `filename*` for non-ASCII), and a
    bidi override in the file's name does not reach the header."""
    settings, shoot, job, _ = review
    psd = job / "psd" / "café-\u202egnp.psd"
    psd.parent.mkdir()
    psd.write_bytes(b"8BPS fake")
    item = _item(shoot, job, "").model_copy(update={"psd": str(psd)})
    links = _publish(settings, item, shoot, job, "run-psd")
    url = links["layered"] + '?"; filename=evil.exe; x=\r\nX-Evil: 1'.replace("\r\n", "%0d%0a")
    status, body, headers = _fetch(url.replace(" ", "%20"))
    assert status == 200 and body == b"8BPS fake"
    disposition = headers["Content-Disposition"]
    assert disposition == (
        "attachment; filename=\"cafe-gnp.psd\"; filename*=UTF-8''caf%C3%A9-gnp.psd"
    ), disposition
    assert "evil" not in disposition and "X-Evil" not in headers


def test_a_large_file_is_streamed_not_read_whole(review) -> None:
    """A 512 MiB PSD is sent in chunks: the server's memory does not grow by the file."""
    settings, shoot, job, _ = review
    psd = job / "big.psd"
    with psd.open("wb") as fh:
        fh.truncate(512 * 1024 * 1024)  # sparse: no disk space taken
    item = _item(shoot, job, "").model_copy(update={"psd": str(psd)})
    links = _publish(settings, item, shoot, job, "run-big")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = 0
    with urllib.request.urlopen(links["layered"], timeout=30) as resp:
        assert int(resp.headers["Content-Length"]) == 512 * 1024 * 1024
        while chunk := resp.read(1 << 20):
            got += len(chunk)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert got == 512 * 1024 * 1024
    assert grown_mib < 128, f"peak memory grew by {grown_mib:.0f} MiB while serving"
