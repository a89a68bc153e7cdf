"""Links to a job folder on object storage: presigned URLs on the studio's S3 endpoint (real
SeaweedFS), opened by a separate process that shares no disk with Cutline. A contact sheet
and a review page in a bucket open, with every picture on them, from any desk that reaches
the endpoint; a tampered or expired link is refused by S3 itself; revoking ends them; a
manifest's hostile text stays text and its free-text reference never links another file."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from cutline.base import storage
from cutline.base.settings import DEFAULT_PRESETS_FILE, CutlineSettings
from cutline.domain.items import ImageItem
from cutline.imaging.contact_sheet import build_contact_sheet
from cutline.services.review_page import publish_review_page
from cutline.services.share import grants_of, register_share, renew_share
from dam_adapters import ApprovalState, AssetSubmission
from dam_adapters.local_catalog import LocalCatalog
from rules.presets import load_presets

FETCHER = Path(__file__).resolve().parent / "link_fetcher.py"
HOSTILE = '<img src=x onerror=alert(1)> " src="http://evil.example/x.png'


def fetch_elsewhere(url: str, tmp_path: Path) -> list[dict]:
    """What a client at another desk gets from ``url`` and every link and picture on its
    pages: a separate, isolated Python (no site-packages, no Cutline, no setting) with a
    HOME and working folder of its own, reaching the bucket over HTTP only."""
    elsewhere = tmp_path / "another-desk"
    (elsewhere / "home").mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(FETCHER), url],
        cwd=elsewhere,
        env={"HOME": str(elsewhere / "home"), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


_TYPE_OF = {".html": "text/html", ".png": "image/png", ".jpg": "image/jpeg"}
_MAGIC = {"image/png": "89504e47", "image/jpeg": "ffd8ff"}


def assert_all_open(fetched: list[dict], endpoint: str) -> None:
    """Every page and picture answered 200 from the configured endpoint, with the content
    type of what it is (and the bytes to match)."""
    assert fetched
    for got in fetched:
        assert got["url"].startswith(endpoint + "/"), got["url"]
        assert got["status"] == 200, got
        suffix = Path(urllib.parse.urlsplit(got["url"]).path).suffix
        if suffix in _TYPE_OF:
            assert got["type"].split(";")[0] == _TYPE_OF[suffix], got
        if got["type"] in _MAGIC:
            assert got["head"].startswith(_MAGIC[got["type"]]), got


@pytest.fixture
def sheet(s3, bucket, tmp_path: Path, settings) -> dict:
    """A contact sheet of 5 assets on 2 pages (plus its index), built into a job folder in
    the bucket, one asset with a hostile SKU and approver."""
    from cutline.imaging import contact_sheet

    catalog = LocalCatalog(tmp_path / "catalog")
    for n in range(5):
        png = tmp_path / f"cut-{n}.png"
        image = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
        image.paste((200, 40 + n, 40, 255), (30, 20, 90, 70))
        image.save(png)
        catalog.register(
            AssetSubmission(
                job_id="OBJ-1",
                sku=HOSTILE if n == 0 else f"SKU-{n:03d}",
                category="homeware",
                channels=["web"],
                source=f"/shoot/{n}.jpg",
                source_name=f"{n}.jpg",
                content_hash=f"{n:064x}",
                approval_state=ApprovalState.AUTO_APPROVED,
                approved_by=HOSTILE if n == 0 else "cutline-auto",
                renditions={"png": str(png)},
            )
        )
    out = f"s3://{bucket}/out"
    folder = f"{out}/OBJ-1/{contact_sheet.CLIENT_SHEET}"  # what client links open
    saved = contact_sheet.PER_PAGE
    contact_sheet.PER_PAGE = 3
    try:
        built = build_contact_sheet(
            catalog.list_job("OBJ-1"),
            "OBJ-1",
            folder,
            load_presets(DEFAULT_PRESETS_FILE),
            lambda record: record.renditions.get("png"),
            "client",
        )
    finally:
        contact_sheet.PER_PAGE = saved
    assert len(built.html_pages) == 2
    return {"out": out, "folder": folder, "bucket": bucket}


def test_a_contact_sheet_in_a_bucket_opens_from_another_desk(sheet, settings, tmp_path):
    """Issue 28 item 3: the client link of a sheet in a bucket is a presigned URL on the
    configured S3 endpoint (not the serve host's share server); a process with no access to
    the data root opens the index, both pages, the page PNGs and every thumbnail (200, the
    right type); nothing is written under the data root for it."""
    link = register_share(settings, "OBJ-1", sheet["folder"])
    assert link is not None
    endpoint = settings.s3_endpoint_url
    assert link.url.startswith(f"{endpoint}/{sheet['bucket']}/out/OBJ-1/shared/sheets/")
    assert f":{settings.resolved_share_port}/" not in link.url
    days = (link.expires_at - datetime.now(UTC)).total_seconds() / 86400
    assert 6.9 < days <= 7  # 14 days asked; S3 takes presigned URLs for a week at most
    assert grants_of(settings, "OBJ-1") == []  # no registry entry on this host

    fetched = fetch_elsewhere(link.url, tmp_path)
    assert_all_open(fetched, endpoint)
    paths = [urllib.parse.urlsplit(got["url"]).path for got in fetched]
    assert sum(p.endswith(".html") for p in paths) == 3  # index and both pages
    assert sum(p.endswith(".png") and "/thumbs/" in p for p in paths) == 10  # 5 assets x 2
    assert sum(p.endswith(".png") and "/thumbs/" not in p for p in paths) == 2  # page PNGs
    # Every link and picture is presigned (a relative link would have answered 403)
    assert all("X-Amz-Signature=" in got["url"] for got in fetched)


def test_hostile_manifest_text_on_a_shared_sheet_stays_text(sheet, settings):
    """A SKU and an approver holding markup are escaped on the shared pages: no picture or
    link of theirs is made, only Cutline's own presigned ones."""
    link = register_share(settings, "OBJ-1", sheet["folder"])
    index = urllib.request.urlopen(link.url, timeout=10).read().decode()
    first = next(
        value
        for value in index.split('href="')[1:]
        if urllib.parse.urlsplit(value.split('"', 1)[0]).path.endswith("page-001.html")
    )
    page_url = first.split('"', 1)[0].replace("&amp;", "&")
    page = urllib.request.urlopen(page_url, timeout=10).read().decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<img src=x" not in page and 'src="http://evil' not in page
    sources = [part.split('"', 1)[0] for part in page.split(' src="')[1:]]
    assert len(sources) == 6 and all(s.startswith(settings.s3_endpoint_url) for s in sources)


def test_a_tampered_or_expired_link_is_refused_by_s3(sheet, settings):
    """The signature covers the object and the expiry: another key, another expiry, a changed
    signature, no signature or a lapsed link are each refused (403) by S3 itself."""
    link = renew_share(settings, "OBJ-1", days=3 / 86400, output_root=sheet["out"])
    assert _status(link.url)[0] == 200
    url = urllib.parse.urlsplit(link.url)
    query = urllib.parse.parse_qs(url.query)
    signature, expires = query["X-Amz-Signature"][0], query["X-Amz-Expires"][0]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    storage.write_bytes(f"{sheet['out']}/OBJ-1/ledger.csv", b"source,sku\n")
    for path in (
        url.path.replace("index.html", "page-002.html"),  # another page of the same link
        f"/{sheet['bucket']}/out/OBJ-1/ledger.csv",  # another file of the job
        f"/{sheet['bucket']}/out/OBJ-1/contact-sheet/index.html",  # the unshared sheet
    ):
        assert _status(url._replace(path=path).geturl())[0] == 403, path
    for tampered in (
        link.url.replace(signature, flipped),
        link.url.replace(f"X-Amz-Expires={expires}&", "X-Amz-Expires=604800&"),
        url._replace(query="").geturl(),
    ):
        assert _status(tampered)[0] == 403, tampered
    deadline = time.monotonic() + 60
    while (status := _status(link.url))[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status[0] == 403 and "expired" in status[1], status


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cutline", "signoff", "link", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )


def test_the_producer_issues_and_revokes_bucket_links_from_the_terminal(sheet, settings, tmp_path):
    """`cutline signoff link JOB --out s3://...` issues a fresh presigned link that opens
    from elsewhere; `--revoke` deletes what every link of the job opens (sheets and review
    pages), so each answers 404 at once, before it expires."""
    first = register_share(settings, "OBJ-1", sheet["folder"])
    issued = _cli("OBJ-1", "--out", sheet["out"])
    assert issued.returncode == 0, issued.stderr
    url = issued.stdout.split(" (valid until ", 1)[0].strip()
    assert url.startswith(settings.s3_endpoint_url) and url != first.url
    fetched = fetch_elsewhere(url, tmp_path)
    assert_all_open(fetched, settings.s3_endpoint_url)
    thumb = next(got["url"] for got in fetched if "/thumbs/" in got["url"])

    revoked = _cli("OBJ-1", "--out", sheet["out"], "--revoke")
    assert revoked.returncode == 0 and "revoked 2 link(s)" in revoked.stdout, revoked
    for gone in (first.url, url, thumb):
        assert _status(gone)[0] == 404, gone
    # The sheet itself stays in the job folder: a new link can be issued from it
    again = _cli("OBJ-1", "--out", sheet["out"])
    assert again.returncode == 0 and _status(again.stdout.split(" ", 1)[0])[0] == 200


def test_no_bucket_link_for_a_shoot_without_a_contact_sheet(s3, bucket):
    issued = _cli("NEVER-1", "--out", f"s3://{bucket}/out")
    assert issued.returncode != 0
    assert "has no contact sheet" in issued.stdout + issued.stderr


# --- review pages ------------------------------------------------------------------------


@pytest.fixture
def review(s3, bucket, tmp_path: Path) -> dict:
    """A review-lane image of a shoot and job folder in the bucket, its PSD, and files a
    hostile manifest might name as reference: in another job, in another bucket."""
    import io

    shoot, job = f"s3://{bucket}/shoots/OBJ-2", f"s3://{bucket}/out/OBJ-2"

    def picture(uri: str, mode: str, colour) -> None:
        buf = io.BytesIO()
        Image.new(mode, (64, 48), colour).save(buf, format="PNG" if mode == "L" else "JPEG")
        storage.write_bytes(uri, buf.getvalue())

    picture(f"{shoot}/a.jpg", "RGB", (200, 40, 40))
    picture(f"{shoot}/refs/look.jpg", "RGB", (40, 200, 40))
    picture(f"{job}/masks/a.png", "L", 255)
    storage.write_bytes(f"{job}/review/a.psd", b"8BPS fake layered file")
    storage.write_bytes(f"{shoot}/page.html", b"<script>alert('from the shoot')</script>")
    storage.write_bytes(f"s3://{bucket}/out/OTHER-9/secret.png", b"another job")
    return {"shoot": shoot, "job": job, "bucket": bucket}


def _item(review: dict, reference: str, sku: str = "SKU-1") -> ImageItem:
    return ImageItem(
        index=0,
        source=f"{review['shoot']}/a.jpg",
        source_name="a.jpg",
        image_id="a",
        sku=sku,
        brief=HOSTILE,
        reasons="glassware: always reviewed",
        mask=f"{review['job']}/masks/a.png",
        psd=f"{review['job']}/review/a.psd",
        reference=reference,
    )


def _publish(settings: CutlineSettings, review: dict, item: ImageItem, run: str) -> dict:
    return publish_review_page(
        settings,
        item,
        "OBJ-2",
        run,
        "http://prefect-ui.example/runs/flow-run/x",
        10**8,
        roots=[review["shoot"], review["job"]],
    )


def test_a_review_page_in_a_bucket_opens_from_another_desk(review, settings, tmp_path):
    """Issue 28 item 3: a review of a job folder in a bucket gets its page and preview next
    to the job's outputs, linked by presigned URLs on the configured endpoint; another desk
    opens the page, the preview, the source, the reference and the mask (shown inline) and
    downloads the PSD (as an attachment); nothing goes under the data root."""
    links = _publish(settings, review, _item(review, "refs/look.jpg", HOSTILE), "run-obj-1")
    assert set(links) == {
        *("page", "preview", "source", "mask", "layered", "reference"),
        *("expires", "expires_at"),
    }
    assert links["page"].startswith(
        f"{settings.s3_endpoint_url}/{review['bucket']}/out/OBJ-2/shared/reviews/run-obj-1/"
    )
    assert not (settings.data_root / "review-pages" / "run-obj-1").exists()
    fetched = {got["url"]: got for got in fetch_elsewhere(links["page"], tmp_path)}
    assert_all_open(list(fetched.values()), settings.s3_endpoint_url)
    assert set(fetched) == {links[name] for name in set(links) - {"expires", "expires_at"}}
    assert fetched[links["preview"]]["type"] == "image/jpeg"
    assert fetched[links["mask"]]["type"] == "image/png"
    psd = fetched[links["layered"]]
    assert psd["type"] == "image/vnd.adobe.photoshop"
    assert psd["disposition"] == 'attachment; filename="a.psd"'
    page = urllib.request.urlopen(links["page"], timeout=10).read().decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert 'src="http://evil' not in page


@pytest.mark.parametrize(
    "reference",
    [
        "s3://{bucket}/out/OTHER-9/secret.png",  # another job of the same bucket
        "../../out/OTHER-9/secret.png",  # climbing out of the shoot
        "s3://{bucket}/shoots/OBJ-2/../../out/OTHER-9/secret.png",
        "s3://another-bucket-entirely/secret.png",
        "/etc/passwd",  # a file of the host that published the page
        "refs/missing.jpg",
    ],
)
def test_a_reference_outside_the_shoot_is_never_linked(review, settings, reference):
    item = _item(review, reference.format(bucket=review["bucket"]))
    links = _publish(settings, review, item, "run-obj-ref")
    assert "reference" not in links
    assert _status(links["source"])[0] == 200
    page = urllib.request.urlopen(links["page"], timeout=10).read().decode()
    assert "secret" not in page and "passwd" not in page


def test_an_html_file_named_as_reference_downloads_instead_of_running(review, settings):
    """A page in the shoot named as reference is linked (it is in the shoot) but answered as
    a download, so it never runs in the browser beside Cutline's pages."""
    links = _publish(settings, review, _item(review, "page.html"), "run-obj-html")
    with urllib.request.urlopen(links["reference"], timeout=10) as response:
        assert response.headers["Content-Disposition"] == 'attachment; filename="page.html"'


@pytest.mark.slow
def test_a_review_waiting_longer_than_its_links_live_gets_fresh_ones_in_its_form(
    review, settings, prefect_server
):
    """Presigned links live seven days at most; a review may wait longer. The stack's
    housekeeping publishes the page again before its links end and puts the new links in the
    waiting form (what the UI shows above Resume, and what the review reads back); a job
    whose links were revoked is left revoked."""
    from uuid import uuid4

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    from cutline.domain.run_config import RunConfig
    from cutline.services.review_links import expires_at, renew_review_links, stored_links
    from cutline.services.waiting_run import waiting_keyset
    from tasks.context import ShootContext
    from tasks.review_request import open_review, review_deployment_id

    ui = "http://prefect-ui.example"
    item = _item(review, "refs/look.jpg")
    ctx = ShootContext(
        job_id="OBJ-2",
        shoot=review["shoot"],
        job_root=review["job"],
        config=RunConfig.freeze(settings),
    )
    with get_client(sync_client=True) as client:
        run = open_review(client, review_deployment_id(client, ctx), item, ctx, str(uuid4()))
        try:
            description_key = waiting_keyset("decision-0")["description"]

            def form() -> tuple[dict, str]:
                links = stored_links(client, run.id).links
                return links, json.loads(client.read_flow_run_input(run.id, description_key))

            first, shown = form()
            assert first["page"] in shown and _status(first["page"])[0] == 200
            assert renew_review_links(settings, ui, job="OBJ-2") == []  # days left: not due
            time.sleep(1.1)  # a URL signed in the same second as the first would be the same

            almost_over = expires_at(first) - timedelta(hours=12)
            assert renew_review_links(settings, ui, now=almost_over, job="OBJ-2") == [str(run.id)]
            fresh, shown = form()
            assert expires_at(fresh) > expires_at(first)
            for name in ("page", "preview", "source", "mask", "layered", "reference"):
                assert fresh[name] != first[name] and fresh[name] in shown, name
                assert first[name] not in shown, name
            assert f"works until {fresh['expires']}" in shown
            page = urllib.request.urlopen(fresh["page"], timeout=10).read().decode()
            assert html.escape(fresh["source"]) in page  # the page links the fresh files too
            assert _status(fresh["source"])[0] == 200

            revoked = _cli("OBJ-2", "--out", f"s3://{review['bucket']}/out", "--revoke")
            assert revoked.returncode == 0, revoked.stderr
            later = expires_at(fresh) - timedelta(hours=1)
            assert renew_review_links(settings, ui, now=later, job="OBJ-2") == []
            assert _status(fresh["page"])[0] == 404  # not published again
        finally:
            client.set_flow_run_state(run.id, Cancelled(), force=True)


def test_revoking_ends_review_pages_of_a_bucket_job(review, settings):
    links = _publish(settings, review, _item(review, ""), "run-obj-revoke")
    assert _status(links["page"])[0] == 200
    revoked = _cli("OBJ-2", "--out", f"s3://{review['bucket']}/out", "--revoke")
    assert "revoked 1 link(s)" in revoked.stdout, revoked
    assert _status(links["page"])[0] == 404 and _status(links["preview"])[0] == 404


def test_a_sheet_link_needs_the_configured_endpoint_reachable_from_elsewhere(
    sheet, settings, override_settings
):
    """The link carries whatever endpoint the studio configured, never the serve host's own
    loopback share server: with CUTLINE_S3_ENDPOINT_URL naming the studio's S3 host by a
    name, the link names that host."""
    endpoint = settings.s3_endpoint_url.replace("127.0.0.1", "localhost")
    override_settings(s3_endpoint_url=endpoint)
    link = register_share(settings, "OBJ-1", sheet["folder"])
    assert link.url.startswith(f"{endpoint}/{sheet['bucket']}/")
    assert _status(link.url)[0] == 200


def test_a_sheet_the_store_cannot_share_costs_the_link_not_the_signoff(s3, bucket, settings):
    """The sign-off form's link: when the bucket refuses or the sheet is gone, the form says
    so and how to issue one later, instead of the sign-off failing."""
    from tasks.signoff import client_link

    index = f"s3://{bucket}/out/OBJ-3/contact-sheet/index.html"  # never built
    link = client_link(settings, "OBJ-3", index)
    assert "url" not in link
    assert "no client link" in link["text"]
    assert f"cutline signoff link OBJ-3 --out s3://{bucket}/out" in link["text"]
