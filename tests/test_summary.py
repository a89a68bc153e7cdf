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
