"""The shoot summary: counts per lane and category, time per stage, for people and scripts."""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, Field

from cutline.base.markdown import code, inert, shortened
from cutline.records.cost import CostReport
from cutline.records.tally import ShootTally

STAGES = ("ingest", "cutout", "score", "route", "export", "register", "review")


class ShootSummary(BaseModel):
    """What a finished shoot run reports."""

    job_id: str
    shoot: str
    ledger: str
    total: int
    lanes: dict[str, int]
    categories: dict[str, dict[str, int]]
    stage_seconds: dict[str, float]
    wall_seconds: float
    ignored_files: list[str]
    manifest_rows_without_files: list[str]
    failures: list[dict[str, str]]
    reviews: list[dict[str, str]]
    model: str
    rules_version: str
    dam: str
    residency: str = ""
    code_version: str = Field(default="", description="The Cutline code the shoot ran on.")
    cost: CostReport | None = None
    time_chart: str = ""
    signoff_run_id: str | None = None
    signoff_note: str = Field(
        default="", description="Why this run started no new sign-off ('' when it did)."
    )
    ui_url: str = Field(default="", description="The Prefect UI the run links point into.")
    contact_sheet: str = ""
    manifest: str = ""
    warnings: list[str] = []
    withdrawn: list[str] = []


def summarize(
    tally: ShootTally,
    lanes: Counter[str],
    *,
    job_id: str,
    shoot: str,
    ledger: str,
    wall_seconds: float,
    ignored: list[str],
    unused_rows: list[str],
    model: str,
    rules_version: str,
    dam: str,
    residency: str = "",
) -> ShootSummary:
    """Build the summary from the reconciled shoot's tally."""
    return ShootSummary(
        job_id=job_id,
        shoot=shoot,
        ledger=ledger,
        total=tally.total,
        lanes=dict(lanes),
        categories={k: dict(v) for k, v in sorted(tally.categories.items())},
        stage_seconds={s: round(tally.stage_seconds.get(s, 0.0), 3) for s in STAGES},
        wall_seconds=round(wall_seconds, 3),
        ignored_files=ignored,
        manifest_rows_without_files=unused_rows,
        failures=tally.failure_rows(),
        reviews=tally.review_rows(),
        model=model,
        rules_version=rules_version,
        dam=dam,
        residency=residency,
    )


def artifact_key(job_id: str) -> str:
    """Prefect artifact key of a job (lowercase letters, digits and '-')."""
    return "shoot-" + "".join(c if c.isalnum() else "-" for c in job_id.lower())


_PROGRESS = re.compile(r"(?P<images>\d+) images in (?P<batches>\d+) batches of (?P<size>\d+)")


def progress_description(images: int, batches: int, batch_size: int) -> str:
    """The progress artifact's description; `cutline status` reads the counts back."""
    return f"{images} images in {batches} batches of {batch_size}"


def parse_progress_description(text: str) -> tuple[int, int, int] | None:
    """(images, batches, batch size) from a progress description, if it is one of ours."""
    match = _PROGRESS.search(text or "")
    return (int(match["images"]), int(match["batches"]), int(match["size"])) if match else None


LISTED_ROWS = 200  # rows per list in the markdown summary; the ledger has them all
# Widest cells of the summary's tables (characters): a longer file name or reason pushes the
# other columns out of the UI's view; the ledger has the full text.
FILE_WIDTH = 48
REASON_WIDTH = 90


def _more(count: int) -> list[str]:
    return (
        ["", f"... and {count - LISTED_ROWS} more: see the ledger."] if count > LISTED_ROWS else []
    )


def md_cell(value: object) -> str:
    """A value made safe for one markdown table cell: inert (`cutline.base.markdown.inert`),
    so a '|' or a line break in a reason or a file name cannot split the row and a manifest
    value cannot become a link, an image or a heading."""
    return inert(value)


def run_link(ui_url: str, run_id: str | None) -> str:
    """A flow run as a link into the Prefect UI (plain id when the UI is not known)."""
    if not run_id:
        return "-"
    if not ui_url:
        return f"`{run_id}`"
    return f"[{run_id[:8]}]({ui_url.rstrip('/')}/runs/flow-run/{run_id})"


def _accounting(summary: ShootSummary) -> str:
    """What the ledger's rows are: input files, plus manifest rows that named no file."""
    rows = len(summary.manifest_rows_without_files)
    files = summary.total - rows
    if not rows:
        return f"{files} input files"
    return f"{summary.total} ledger rows: {files} input files and {rows} manifest row(s) without a file"


def summary_markdown(summary: ShootSummary) -> str:
    """The summary as markdown for the Prefect UI and the terminal."""
    lines = [
        f"# Shoot {summary.job_id}",
        "",
        _accounting(summary) + f" from {code(summary.shoot)} in {summary.wall_seconds:.1f} s "
        f"(model {code(summary.model)}, rules {code(summary.rules_version)}, "
        f"DAM {inert(summary.dam)}"
        + (f", Cutline {code(summary.code_version)}" if summary.code_version else "")
        + ").",
        "",
        "| lane | images |",
        "|---|---|",
        *[f"| {lane} | {n} |" for lane, n in summary.lanes.items()],
        "",
        "| category | " + " | ".join(summary.lanes) + " |",
        "|---|" + "---|" * len(summary.lanes),
        *[
            f"| {inert(cat)} | " + " | ".join(str(c.get(lane, 0)) for lane in summary.lanes) + " |"
            for cat, c in summary.categories.items()
        ],
        "",
        "| stage | seconds (summed over images) |",
        "|---|---|",
        *[f"| {s} | {t:.2f} |" for s, t in summary.stage_seconds.items()],
        "",
        f"Manifest: {code(summary.manifest)}" if summary.manifest else "Manifest: none",
        "",
        f"Ledger: {code(summary.ledger)}",
        "",
        f"Where: {inert(summary.residency)}" if summary.residency else "",
    ]
    if summary.warnings:
        lines += ["", "## Warnings", "", *[f"- {inert(w)}" for w in summary.warnings]]
    if summary.withdrawn:
        lines += [
            "",
            f"## Withdrawn from the DAM ({len(summary.withdrawn)})",
            "",
            *[f"- {inert(w)}" for w in summary.withdrawn[:LISTED_ROWS]],
            *_more(len(summary.withdrawn)),
        ]
    if summary.cost:
        c = summary.cost
        lines += [
            "",
            f"## Cost ({c.currency})",
            "",
            f"Machine: {c.wall_minutes:.1f} min wall clock = {c.machine_cost:.2f} {c.currency} "
            f"({c.per_image:.4f} per image). Review lane: {c.review_minutes:.1f} retoucher minutes (estimated).",
            "",
            "| lane | images | machine | retouch | total | per image |",
            "|---|---|---|---|---|---|",
            *[
                f"| {lane} | {v.images} | {v.machine:.2f} | {v.retouch:.2f} | {v.total:.2f} | {v.per_image:.4f} |"
                for lane, v in c.lanes.items()
            ],
        ]
        if summary.time_chart:
            lines += [
                "",
                f"Time chart: the artifact {code(artifact_key(summary.job_id) + '-time-chart')} "
                f"on this run's page; the picture: {code(summary.time_chart)}",
            ]
    if summary.signoff_run_id:
        lines += [
            "",
            f"Sign-off: run {run_link(summary.ui_url, summary.signoff_run_id)} waits for the "
            "producer; contact sheet "
            f"{code(summary.contact_sheet)} (`cutline signoff list`)"
            + (f"; {inert(summary.signoff_note)}." if summary.signoff_note else "."),
        ]
    elif summary.signoff_note:
        lines += ["", f"Sign-off: {inert(summary.signoff_note)}."]
    if summary.reviews:
        lines += [
            "",
            f"## Review lane when the shoot ended ({len(summary.reviews)}, by deadline)",
            "",
            f"What waits now: the artifact {code(artifact_key(summary.job_id) + '-review-queue')} "
            "on this run's page, rewritten at every decision (or `cutline review list`).",
            "",
            "| deadline | SKU | category | file | why | review run |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            "| "
            + " | ".join(
                md_cell(value)
                for value in (
                    r["deadline"] or "-",
                    shortened(r["sku"], 32),
                    r["category"] or "-",
                    shortened(r["file"], FILE_WIDTH, middle=True),
                )
            )
            + f" | {md_cell(shortened(r['reasons'], REASON_WIDTH))} "
            f"| {run_link(summary.ui_url, r['review_run_id'])} |"
            for r in summary.reviews[:LISTED_ROWS]
        ]
        lines += _more(len(summary.reviews))
    if summary.failures:
        lines += ["", "## Failed", "", "| file | reason |", "|---|---|"]
        lines += [
            f"| {md_cell(shortened(f['file'], FILE_WIDTH, middle=True))} "
            f"| {md_cell(shortened(f['reason'], 2 * REASON_WIDTH))} |"
            for f in summary.failures[:LISTED_ROWS]
        ]
        lines += _more(len(summary.failures))
    if summary.ignored_files:
        lines += [
            "",
            f"## Ignored ({len(summary.ignored_files)}): hidden files and sidecars, not images",
            "",
            *[f"- {code(name)}" for name in summary.ignored_files[:LISTED_ROWS]],
            *_more(len(summary.ignored_files)),
        ]
    if summary.manifest_rows_without_files:
        lines += [
            "",
            "Manifest rows with no matching file: "
            + ", ".join(inert(name) for name in summary.manifest_rows_without_files),
        ]
    return "\n".join(lines)
