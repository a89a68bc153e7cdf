"""A shoot goes from run to producer sign-off through the same inputs the UI sends: the
contact sheet lists every asset, a send-back reopens exactly the named SKUs, the DAM records
move to signed-off with who, and the studio's webhook gets one call per sign-off."""

from __future__ import annotations

import html
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from PIL import Image

from cutline.imaging.samples import DEFAULT_SAMPLES, write_sample_shoot
from cutline.records.ledger import read_ledger
from tests.reviews import decide, form_description, ui_form, wait_for_reviews
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _wait_paused_signoff(settings, job: str, timeout: float = 180.0):
    from cutline.services.signoff_queue import signoff_run_for

    return wait_until(
        lambda: signoff_run_for(job, settings.ui_url), f"a sign-off waiting for {job}", timeout
    )


def _signoff_form(
    decision: str, send_back: str = "", note: str = "", producer: str = "Pat Producer"
):
    """Exactly the JSON the UI's Resume form submits for SignOffDecision."""
    return {
        "decision": decision,
        "send_back": send_back,
        "note": note,
        "producer": producer,
        "comment": "Looks good for the SS27 launch",
    }


def test_shoot_to_signoff_with_a_send_back_then_approval(
    prefect_server, model_home, tmp_path, settings, webhook
):
    from cutline.services.review_queue import read_run
    from dam_adapters import ApprovalState
    from dam_adapters.local_catalog import LocalCatalog
    from flows.process_shoot import process_shoot

    shoot, out = tmp_path / "shoot", tmp_path / "out"
    write_sample_shoot(shoot, DEFAULT_SAMPLES, size=(320, 240))
    (shoot / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")  # a failed file
    with (shoot / "manifest.csv").open("a") as manifest:  # a manifest row without a file
        manifest.write("missing_front.jpg,SKU-9999,footwear,SS27,web,,,\n")
    summary = process_shoot(
        shoot=str(shoot),
        job_id="SIGN-0001",
        manifest=str(shoot / "manifest.csv"),
        output_root=str(out),
    )
    assert summary.signoff_run_id
    assert summary.contact_sheet == str(out / "SIGN-0001" / "contact-sheet" / "index.html")
    catalog = LocalCatalog(settings.resolved_catalog_dir)
    auto = {r.sku: r for r in catalog.list_job("SIGN-0001")}
    assert len(auto) == summary.lanes["auto"] >= 2

    first = _wait_paused_signoff(settings, "SIGN-0001")
    assert first.run_id == summary.signoff_run_id
    text = form_description(first.run_id)
    assert "Sign off shoot SIGN-0001" in text and "contact-sheet/index.html" in text
    # Counts add up: the DAM's assets, and the ledger's every file and manifest row.
    rows = read_ledger(summary.ledger)
    dam_line = next(line for line in text.splitlines() if "In the DAM:" in line)
    assert f"In the DAM: {len(auto)} assets**" in dam_line and f"auto {len(auto)}" in dam_line
    ledger_line = next(line for line in text.splitlines() if "In the ledger:" in line)
    assert f"In the ledger: {len(rows)} rows" in ledger_line
    assert "failed files 1" in ledger_line and "manifest rows without a file 1" in ledger_line
    parts = ledger_line.split("** = ", 1)[1].split(" + ")
    assert sum(int(part.rsplit(" ", 1)[1]) for part in parts) == len(rows) == summary.total
    sheet = (out / "SIGN-0001" / "contact-sheet" / "page-001.html").read_text()
    assert all(sku in sheet for sku in auto)  # every auto asset is on the sheet
    assert (out / "SIGN-0001" / "contact-sheet" / "page-001.png").is_file()
    # The studio's sheet says how each asset got there; the client's says none of it.
    assert "confidence" in sheet and "approved by cutline-auto" in sheet
    assert all(record.source_name in sheet for record in auto.values())

    link = _check_client_link(settings, text, auto)
    client_page = urllib.request.urlopen(link.replace("index.html", "page-001.html")).read()
    client_page = client_page.decode()
    assert "for your sign-off" in client_page and "channels: " in client_page
    for internal in ("confidence", "approved by", "cutline-auto", "auto,", "review,"):
        assert internal not in client_page, internal
    assert not any(record.source_name in client_page for record in auto.values())

    bad = decide(first.run_id, _signoff_form("send-back", "NOPE-1"))
    assert link in form_description(first.run_id)  # the replayed run issued no second link
    assert bad.state.is_paused() and "unknown or not signable SKU(s): NOPE-1" in form_description(
        first.run_id
    )
    back = sorted(auto)[0]
    done = decide(first.run_id, _signoff_form("send-back", back, note="Shadow still visible"))
    assert done.state.is_completed(), done.state
    records = {r.sku: r for r in catalog.list_job("SIGN-0001")}
    assert records[back].approval_state == ApprovalState.SENT_BACK
    for sku, record in records.items():
        if sku != back:
            assert record.approval_state == ApprovalState.SIGNED_OFF
            assert (
                record.approved_by == "Pat Producer" and record.history[-1]["state"] == "signed-off"
            )
    assert len(webhook.calls) == 1
    call = webhook.calls[0]["body"]
    assert call["event"] == "cutline.shoot.signed-off" and call["job_id"] == "SIGN-0001"
    assert call["sent_back"] == [back] and call["producer"] == "Pat Producer"
    assert "token" not in str(call).lower() and "secret" not in str(call).lower()

    # The send-back reopened exactly that SKU; the glassware review still waits too.
    waiting = {e.sku: e for e in wait_for_reviews(settings, "SIGN-0001", 2)}
    assert set(waiting) == {back, "SKU-2001"}
    assert "Sent back by producer Pat Producer: Shadow still visible" in waiting[back].reasons
    for entry in waiting.values():
        assert decide(entry.run_id, ui_form("approve")).state.is_completed()

    # The last decided review asks for sign-off again, now with every image.
    second = _wait_paused_signoff(settings, "SIGN-0001")
    assert second.run_id != first.run_id
    assert read_run(first.run_id).state.is_completed()
    # A refused answer from the terminal is printed with its reason, and the sign-off waits.
    wrong = ["--send-back", "NO-SUCH-SKU", "--note", "x", "--by", "Pat Producer"]
    refused = subprocess.run(
        [sys.executable, "-m", "cutline", "signoff", "resume", "SIGN-0001", *wrong],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not accepted: unknown or not signable SKU(s): NO-SUCH-SKU" in refused.stderr
    assert read_run(second.run_id).state.is_paused()
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "cutline",
            "signoff",
            "resume",
            "SIGN-0001",
            "--approve",
            "--by",
            "Pat Producer",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    final = {r.sku: r for r in catalog.list_job("SIGN-0001")}
    assert {r.approval_state for r in final.values()} == {ApprovalState.SIGNED_OFF}
    assert set(final) == set(auto) | {"SKU-2001"}
    assert len(webhook.calls) == 2 and webhook.calls[1]["body"]["sent_back"] == []
    sheet = "".join(
        p.read_text() for p in (out / "SIGN-0001" / "contact-sheet").glob("page-*.html")
    )
    assert "SKU-2001" in sheet and "(review, approved)" in sheet


def _check_client_link(settings, form_text: str, skus) -> str:
    """The form carries an expiring, unguessable client link that serves the sheet and
    nothing else (tests/test_share.py covers expiry, revocation and path tricks)."""
    import re

    found = re.search(
        r"\[open it \(client link\)\]\((http://\S+/s/[A-Za-z0-9_-]{43}/index\.html)\), valid until ",
        form_text,
    )
    assert found, form_text
    link = found.group(1)
    page = urllib.request.urlopen(link.replace("index.html", "page-001.html"), timeout=10)
    body = page.read().decode()
    assert page.status == 200 and all(sku in body for sku in skus)
    thumb = body.split('src="', 1)[1].split('"', 1)[0]
    image = urllib.request.urlopen(link.replace("index.html", thumb), timeout=10)
    assert image.headers["Content-Type"] == "image/png"
    base = link.rsplit("/s/", 1)[0]
    for path in ("/shoots/SIGN-0001/index.html", link.rsplit("/", 1)[0] + "/../ledger.csv", "/"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(path if path.startswith("http") else base + path, timeout=10)
        assert info.value.code == 404, path
    return link


def _signoff_cli(job: str) -> subprocess.CompletedProcess:
    command = ["signoff", "resume", job, "--approve", "--by", "Pat Producer"]
    return subprocess.run(
        [sys.executable, "-m", "cutline", *command],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_signoff_covers_exactly_the_assets_its_sheet_showed(
    prefect_server, model_home, tmp_path, settings, webhook
):
    """The producer's form and sheet were made while a second review still waited. Then one
    review is approved and one auto asset changes in the DAM (a new revision); the producer
    approves the form they saw: exactly the assets it showed are signed off, the two others
    are left out, and the producer is told which and why. The last review's decision asks
    for the next sign-off, which shows and signs them."""
    from dataclasses import replace

    from dam_adapters import ApprovalState
    from dam_adapters.local_catalog import LocalCatalog
    from flows.process_shoot import process_shoot

    job = "SIGN-SHOWN"
    glass = DEFAULT_SAMPLES[3]  # glassware: always reviewed
    samples = (
        *DEFAULT_SAMPLES[:2],
        glass,
        replace(glass, filename="SKU-2002_front.jpg", sku="SKU-2002", colour=(170, 150, 190)),
    )
    shoot = tmp_path / "shoot"
    write_sample_shoot(shoot, samples, size=(320, 240))
    process_shoot(shoot=str(shoot), job_id=job, output_root=str(tmp_path / "out"))
    first = _wait_paused_signoff(settings, job)
    reviews = {e.sku: e for e in wait_for_reviews(settings, job, 2)}
    catalog = LocalCatalog(settings.resolved_catalog_dir)
    shown = {r.sku: r for r in catalog.list_job(job)}  # what the sheet was made from
    assert set(shown).isdisjoint(reviews) and len(shown) >= 1

    # After the sheet: a review is decided (the other still waits, so no new sign-off) ...
    assert decide(reviews["SKU-2001"].run_id, ui_form("approve")).state.is_completed()
    # ... and someone changes an auto asset in the DAM.
    changed = sorted(shown)[0]
    catalog.update_approval(
        shown[changed].dam_id, ApprovalState.APPROVED, by="DAM editor", note="re-cropped"
    )
    assert _wait_paused_signoff(settings, job).run_id == first.run_id

    cli = _signoff_cli(job)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    told = cli.stdout
    assert "Left out 2 asset(s)" in told, told
    assert "SKU-2001 (SKU-2001_front.jpg): approved after the contact sheet was made" in told
    assert f"{changed} ({shown[changed].source_name}): changed since the contact sheet" in told
    assert "asked for when the shoot's last review is decided" in told
    now = {r.sku: r for r in catalog.list_job(job)}
    assert now["SKU-2001"].approval_state == ApprovalState.APPROVED  # never shown: not signed
    assert now[changed].approval_state == ApprovalState.APPROVED  # shown otherwise: not signed
    assert now[changed].decided_by == "DAM editor"
    for sku in set(shown) - {changed}:
        assert now[sku].approval_state == ApprovalState.SIGNED_OFF, sku
    call = webhook.calls[-1]["body"]
    assert call["job_id"] == job and call["signed_off"] == len(shown) - 1
    assert len(call["left_out"]) == 2

    # The last review's decision asks for the next sign-off: it shows and signs the rest.
    assert decide(reviews["SKU-2002"].run_id, ui_form("approve")).state.is_completed()
    second = _wait_paused_signoff(settings, job)  # the first one is Completed: not waiting
    assert second.run_id != first.run_id
    assert "In the DAM: " in form_description(second.run_id)
    cli = _signoff_cli(job)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "Left out" not in cli.stdout, cli.stdout
    final = {r.sku: r for r in catalog.list_job(job)}
    assert set(final) == set(shown) | {"SKU-2001", "SKU-2002"}
    assert {r.approval_state for r in final.values()} == {ApprovalState.SIGNED_OFF}


def _cutline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cutline", *args], capture_output=True, text=True, timeout=300
    )


def test_a_signed_off_shoot_stays_signed_off_through_reruns_and_reopens_on_request(
    prefect_server, model_home, tmp_path, settings
):
    """Issue 30 (1, 2), through the doors a producer uses (the shoot's flow as the UI's Retry
    and a schedule run it, the sign-off and reopen commands): an unchanged rerun of a
    signed-off shoot asks for no sign-off and relabels nothing (DAM, studio sheet, the
    client's link); a changed image asks for sign-off of itself only; a producer reopens a
    signed-off SKU with a note from the terminal."""
    import numpy as np

    from cutline.services.signoff_queue import signoff_runs
    from dam_adapters import ApprovalState
    from dam_adapters.base import provenance
    from dam_adapters.local_catalog import LocalCatalog
    from flows.process_shoot import process_shoot
    from tests.reviews import retouched_png

    job = "KEEP-0001"
    glass = next(s for s in DEFAULT_SAMPLES if s.sku == "SKU-2001")  # always reviewed
    shoot, out = tmp_path / "shoot", tmp_path / "out"
    write_sample_shoot(shoot, (*DEFAULT_SAMPLES[:2], glass), size=(320, 240))
    params = dict(shoot=str(shoot), job_id=job, manifest=str(shoot / "manifest.csv"))
    first = process_shoot(**params, output_root=str(out))
    catalog = LocalCatalog(settings.resolved_catalog_dir)
    (review,) = wait_for_reviews(settings, job, 1)
    assert review.sku == "SKU-2001"
    alpha = np.zeros((240, 320), dtype=np.uint8)
    alpha[40:200, 120:200] = 255
    replaced = ui_form(
        "replace", "Ben Retoucher", retouched_png(tmp_path / "glass.png", alpha), "rim fixed"
    )
    assert decide(review.run_id, replaced).state.is_completed()
    signoff = _wait_paused_signoff(settings, job)
    assert signoff.run_id != first.signoff_run_id  # the last review asked for every asset
    client_link = _client_link_of(form_description(signoff.run_id))
    assert _signoff_cli(job).returncode == 0
    signed = {r.sku: r for r in catalog.list_job(job)}
    assert {r.approval_state for r in signed.values()} == {ApprovalState.SIGNED_OFF}
    client_before = _fetch_sheet(client_link)
    assert "for your sign-off" in client_before and "signed off" not in client_before

    # An unchanged rerun (what Retry and a nightly schedule do): no new sign-off, nothing
    # cancelled or relabelled.
    every = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLED", "COMPLETED"]
    runs_before = {(str(r.id), r.state_type) for r in signoff_runs(job, every)}
    again = process_shoot(**params, output_root=str(out))
    assert again.signoff_run_id is None and "nothing new to sign off" in again.signoff_note
    assert {(str(r.id), r.state_type) for r in signoff_runs(job, every)} == runs_before
    after = {r.sku: r for r in catalog.list_job(job)}
    assert {sku: r.revision for sku, r in after.items()} == {
        sku: r.revision for sku, r in signed.items()
    }
    made = {sku: provenance(r) for sku, r in after.items()}
    assert (
        made["SKU-2001"].decision == "replaced" and made["SKU-2001"].decided_by == "Ben Retoucher"
    )
    autos = [sku for sku, m in made.items() if m.lane == "auto"]
    assert autos and all(made[sku].decided_by == "cutline-auto" for sku in autos)
    assert {m.signed_off_by for m in made.values()} == {"Pat Producer"}
    assert _fetch_sheet(client_link) == client_before  # the client's link shows what it did
    listed = _cutline("dam", "list", "--job", job).stdout  # what the producer reads there
    glass_line = next(line for line in listed.splitlines() if "SKU-2001" in line)
    assert "signed-off" in glass_line and "review: Ben Retoucher" in glass_line
    assert "Pat Producer" in glass_line

    # One image changes: the rerun asks for sign-off of that one only.
    changed = next(s for s in DEFAULT_SAMPLES if s.sku == autos[0])
    with Image.open(shoot / changed.filename) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(shoot / changed.filename)
    third = process_shoot(**params, output_root=str(out))
    assert third.signoff_run_id, third.signoff_note
    text = form_description(_wait_paused_signoff(settings, job).run_id)
    assert f"1 asset(s) not signed off yet (SKU {changed.sku})" in text, text
    assert "signed off earlier stay signed off" in text
    assert _fetch_sheet(client_link) == client_before
    assert _signoff_cli(job).returncode == 0
    live = [r for r in catalog.list_job(job) if r.approval_state != ApprovalState.WITHDRAWN]
    assert {r.approval_state for r in live} == {ApprovalState.SIGNED_OFF}
    studio = "".join(
        html.unescape(p.read_text()) for p in (out / job / "contact-sheet").glob("page-*.html")
    )
    assert "replaced by Ben Retoucher" in studio and "approved by cutline-auto" in studio

    # Client feedback: the producer reopens the glass with a note, from the terminal.
    where = ("--by", "Pat Producer", "--out", str(out))
    refused = _cutline("signoff", "reopen", job, "--sku", "NO-SUCH", "--note", "x", *where)
    assert refused.returncode == 1 and "NO-SUCH: no asset of this SKU" in refused.stderr
    no_note = _cutline("signoff", "reopen", job, "--sku", "SKU-2001", *where)
    assert no_note.returncode == 2 and "--note" in no_note.stderr
    reopened = _cutline(
        "signoff",
        "reopen",
        job,
        "--sku",
        "SKU-2001",
        "--note",
        "client: rim too soft",
        "--by",
        "Pat Producer",
        "--out",
        str(out),
    )
    assert reopened.returncode == 0, reopened.stdout + reopened.stderr
    assert "Reopened by Pat Producer (client: rim too soft)" in reopened.stdout
    glass_record = next(
        r
        for r in catalog.list_job(job)
        if r.sku == "SKU-2001" and r.approval_state != ApprovalState.WITHDRAWN
    )
    assert glass_record.approval_state == ApprovalState.SENT_BACK
    (back,) = wait_for_reviews(settings, job, 1)
    assert "Reopened by producer Pat Producer: client: rim too soft" in back.reasons
    # Its decision asking for sign-off of it alone: tests/test_retry_browser.py (UI reopen).


def _client_link_of(form_text: str) -> str:
    import re

    found = re.search(r"\[open it \(client link\)\]\((http://\S+/index\.html)\)", form_text)
    assert found, form_text
    return found.group(1)


def _fetch_sheet(link: str) -> str:
    """The client's sheet as their browser gets it: the index and its first page."""
    index = urllib.request.urlopen(link, timeout=10).read().decode()
    page = urllib.request.urlopen(link.replace("index.html", "page-001.html"), timeout=10)
    return index + page.read().decode()
