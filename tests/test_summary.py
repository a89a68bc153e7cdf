"""The shoot summary as the UI and the terminal show it: tables that cannot be broken by a
file name or a reason, and runs that are links."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from cutline.records.summary import ShootSummary, summary_markdown

RUN = "0a04a2c5-78a7-4d87-a4fb-21874fd79b50"


def _summary(**changes) -> ShootSummary:
    base = dict(
        job_id="SUM-1",
        shoot="/shoots/SUM-1",
        ledger="/out/SUM-1/ledger.csv",
        total=2,
        lanes={"auto": 0, "review": 1, "failed": 1},
        categories={},
        stage_seconds={},
        wall_seconds=1.0,
        ignored_files=[],
        manifest_rows_without_files=[],
        failures=[{"file": "a|b.jpg", "reason": "damaged | truncated\nre-export it"}],
        reviews=[
            {
                "deadline": "in three days",
                "sku": "SKU|1",
                "category": "glassware",
                "file": "x.jpg",
                "reasons": "rule glass | low confidence",
                "review_run_id": RUN,
            }
        ],
        model="u2netp",
        rules_version="v1",
        dam="local",
        signoff_run_id=RUN,
        ui_url="http://127.0.0.1:4200",
    )
    return ShootSummary(**{**base, **changes})


def _table_rows(markdown: str, header: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index(header)
    return [line for line in lines[start + 2 :] if line.startswith("|")][:1]


def test_a_pipe_or_line_break_in_a_cell_keeps_the_row_whole() -> None:
    text = summary_markdown(_summary())
    (review,) = _table_rows(text, "| deadline | SKU | category | file | why | review run |")
    (failure,) = _table_rows(text, "| file | reason |")
    for row, columns in ((review, 6), (failure, 2)):
        unescaped = row.replace("\\|", "")
        assert unescaped.count("|") == columns + 1, row
    assert "re\\-export it" in failure  # the line break became a space, not a new row


def test_manifest_text_cannot_load_images_or_forge_blocks_in_the_summary() -> None:
    # A brief, SKU or file name holding markdown must show as text: no remote image (a
    # beacon), no link, no heading or quote that reads like Cutline's own words.
    hostile = "![x](http://127.0.0.1:9/beacon.png)\n## Approved by QA <img src=x>"
    summary = _summary(
        reviews=[
            {
                "deadline": "",
                "sku": hostile,
                "category": hostile,
                "file": hostile,
                "reasons": hostile,
                "review_run_id": RUN,
            }
        ],
        failures=[{"file": hostile, "reason": hostile}],
        warnings=[hostile],
        withdrawn=[hostile],
        manifest_rows_without_files=[hostile],
        ignored_files=["/shoot/`x` ![y](http://127.0.0.1:9/b.png)"],
    )
    html = MarkdownIt("gfm-like").render(summary_markdown(summary))  # tables, autolinks
    assert "<img" not in html and "127.0.0.1:9" not in re.sub(r">[^<]*<", "><", html)
    assert "Approved by QA" not in "".join(re.findall(r"<h\d>.*?</h\d>", html))
    assert html.count("<a href") == 2  # only the review run and the sign-off run


def test_runs_are_links_into_the_prefect_ui() -> None:
    text = summary_markdown(_summary())
    link = f"(http://127.0.0.1:4200/runs/flow-run/{RUN})"
    assert text.count(link) == 2  # the review run and the sign-off run
    plain = summary_markdown(_summary(ui_url=""))
    assert f"`{RUN}`" in plain and "/runs/flow-run/" not in plain


def test_the_header_accounts_for_files_and_manifest_rows() -> None:
    text = summary_markdown(_summary(total=3, manifest_rows_without_files=["gone.jpg"]))
    assert "3 ledger rows: 2 input files and 1 manifest row(s) without a file" in text
    assert "2 input files from" in summary_markdown(_summary())


def test_long_names_and_reasons_are_cut_so_every_column_stays_in_view() -> None:
    """Issue 30 (4): one long file name or reason no longer pushes the other columns out of
    the UI's view; a file keeps its start and extension, a reason its start."""
    from cutline.base.markdown import shortened, unescaped
    from cutline.records.summary import FILE_WIDTH, REASON_WIDTH

    name = "campaign-SS27/" + "very-long-folder-name/" * 8 + "SKU-1001_front.jpg"
    reason = "rule glassware: " + "the rim and the reflections need a person " * 6
    review = {**_summary().reviews[0], "file": name, "reasons": reason}
    text = unescaped(summary_markdown(_summary(reviews=[review])))
    (row,) = _table_rows(text, "| deadline | SKU | category | file | why | review run |")
    file_cell, why_cell = (cell.strip() for cell in row.split(" | ")[3:5])
    assert len(file_cell) == FILE_WIDTH and file_cell.startswith("campaign-SS27/")
    assert file_cell.endswith("SKU-1001_front.jpg") and "…" in file_cell
    assert len(why_cell) <= REASON_WIDTH and why_cell.startswith("rule glassware: the rim")
    assert shortened("short.jpg", 48, middle=True) == "short.jpg"
    assert "-review-queue" in text and "rewritten at every decision" in text


def test_the_time_chart_is_on_the_run_page_as_a_picture_and_as_text() -> None:
    import base64

    from cutline.records.cost import CostReport, time_chart_markdown

    report = CostReport(
        currency="EUR",
        wall_minutes=2.0,
        review_minutes=6.0,
        machine_cost=0.1,
        per_image=0.01,
        lanes={},
        cpu_seconds_by_stage={},
    )
    png = b"\x89PNG\r\n\x1a\nfake"
    text = time_chart_markdown(report, "SUM-1", png)
    assert f"(data:image/png;base64,{base64.b64encode(png).decode()})" in text
    bars = [line for line in text.splitlines() if "lane (" in line]
    assert bars[0].count("█") == 10 and bars[1].count("█") == 30  # 2 : 6 minutes


def test_the_review_queue_page_lists_what_waits_by_deadline_and_when() -> None:
    from datetime import UTC, datetime, timedelta

    from cutline.services.review_queue import ReviewEntry
    from tasks.review_board import queue_markdown

    at = datetime.now(UTC).replace(microsecond=0)
    entry = ReviewEntry(
        run_id=RUN,
        run_name="review",
        job_id="SUM-1",
        sku="SKU-9",
        category="glassware",
        reasons="rule glassware",
        deadline=f"{at + timedelta(days=1):%Y-%m-%d}",
        queue="senior",
        priority=1,
        waiting_since=(at - timedelta(hours=1.5)).isoformat(),
        age_hours=1.5,
        overdue=False,
        escalated=False,
        state="Suspended",
        ui_url="",
        source="/shoot/a.jpg",
    )
    text = queue_markdown("SUM-1", [entry], "http://127.0.0.1:4200", at)
    assert f"**1 waiting** as of {at:%Y-%m-%d %H:%M:%S} UTC" in text
    assert f"/runs/flow-run/{RUN}" in text and "1.5 h" in text
    assert "Nothing waits" in queue_markdown("SUM-1", [], "", at)


def test_a_long_review_queue_page_gives_the_count_and_where_to_see_every_review() -> None:
    from datetime import UTC, datetime

    from tasks.review_board import LISTED, queue_count_markdown

    at = datetime.now(UTC).replace(microsecond=0)
    text = queue_count_markdown("SUM-1", LISTED + 1, at)
    assert f"**{LISTED + 1} waiting** as of {at:%Y-%m-%d %H:%M:%S} UTC" in text
    assert "`cutline review list`" in text and "job:SUM\\-1" in text
