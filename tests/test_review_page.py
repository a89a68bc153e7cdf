"""A review's page serves that review's own files and nothing else: a manifest's free-text
reference column naming a system file, or a symlink in the shoot pointing out of it, is
never handed to whoever holds the link. Real share server, real files."""

from __future__ import annotations

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
