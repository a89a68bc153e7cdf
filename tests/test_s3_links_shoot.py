"""Issue 28 item 3, end to end: a shoot whose job folder is in a bucket (real SeaweedFS, real
Prefect server, the real model) gets a review page and a client link to its contact sheet
that a process sharing no disk with the workers opens over HTTP, pictures included; neither
lives on the serve host (no page under the data root, no share registry entry, no link to
its share server)."""

from __future__ import annotations

import os
import re

import pytest

from cutline.base import storage
from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.services.share import grants_of
from tests.reviews import form_description, wait_for_reviews
from tests.test_object_links import assert_all_open, fetch_elsewhere
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

JOB = "S3-LINKS-1"


def test_a_bucket_shoots_review_page_and_client_link_open_from_another_desk(
    s3, bucket, prefect_server, model_home, settings, tmp_path
):
    from cutline.base.settings import reload_settings
    from cutline.services.signoff_queue import signoff_run_for
    from flows.process_shoot import process_shoot

    local = tmp_path / "shoot"
    write_sample_shoot(local, DEFAULT_SAMPLES, size=(320, 240))
    shoot = f"s3://{bucket}/shoots/{JOB}"
    for path in local.iterdir():
        storage.write_bytes(f"{shoot}/{path.name}", path.read_bytes())
    os.environ["CUTLINE_DAM_ADAPTER"] = "object-store"  # the catalog in the bucket too
    reload_settings()
    try:
        summary = process_shoot(
            shoot=shoot,
            job_id=JOB,
            manifest=f"{shoot}/manifest.csv",
            output_root=f"s3://{bucket}/out",
        )
    finally:
        os.environ.pop("CUTLINE_DAM_ADAPTER")
        reload_settings()
    assert summary.lanes["review"] >= 1 and summary.lanes["auto"] >= 1
    endpoint = settings.s3_endpoint_url

    # The review page: linked from the retoucher's form, next to the job's outputs
    review = wait_for_reviews(settings, JOB, 1)[0]
    text = form_description(review.run_id)
    page = re.search(r"\*\*\[Open the review page\]\((\S+)\)\*\*", text)
    assert page, text
    assert page.group(1).startswith(f"{endpoint}/{bucket}/out/{JOB}/shared/reviews/")
    fetched = fetch_elsewhere(page.group(1), tmp_path)
    assert_all_open(fetched, endpoint)
    kinds = {got["type"].split(";")[0] for got in fetched}
    assert {"text/html", "image/jpeg", "image/png", "image/vnd.adobe.photoshop"} <= kinds
    assert not (settings.data_root / "review-pages" / review.run_id).exists()

    # The client link: in the producer's sign-off form, to the sheet in the bucket
    signoff = wait_until(lambda: signoff_run_for(JOB, settings.ui_url), "the sign-off", 240)
    text = form_description(signoff.run_id)
    link = re.search(r"\[open it \(client link\)\]\((\S+)\), valid until ", text)
    assert link, text
    assert link.group(1).startswith(f"{endpoint}/{bucket}/out/{JOB}/shared/sheets/")
    assert f":{settings.resolved_share_port}/" not in link.group(1)
    fetched = fetch_elsewhere(link.group(1), tmp_path)
    assert_all_open(fetched, endpoint)
    thumbs = [got for got in fetched if "/thumbs/" in got["url"]]
    assert len(thumbs) == 2 * summary.lanes["auto"]  # every auto asset, twice
    assert grants_of(settings, JOB) == []  # nothing in the serve host's share registry
