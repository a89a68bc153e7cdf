"""Cost per image and per lane, and the AI-lane vs review-lane time chart."""

from __future__ import annotations

import io

from pydantic import BaseModel

from cutline.base.settings import CutlineSettings
from cutline.records.tally import ShootTally
from rules.engine import Lane


class LaneCost(BaseModel):
    """What one lane cost."""

    images: int
    machine: float
    retouch: float
    total: float
    per_image: float


class CostReport(BaseModel):
    """Machine time of the run, retoucher time of the review lane, and what they cost."""

    currency: str
    wall_minutes: float
    review_minutes: float
    machine_cost: float
    per_image: float
    lanes: dict[str, LaneCost]
    cpu_seconds_by_stage: dict[str, float]


def cost_report(tally: ShootTally, wall_seconds: float, settings: CutlineSettings) -> CostReport:
    """Machine cost is the run's wall time at the machine rate, shared between lanes by the
    stage time their images used; the review lane adds estimated retoucher time."""
    machine_cost = wall_seconds / 3600 * settings.machine_hourly_rate
    counts = {lane: tally.lanes.get(lane.value, 0) for lane in Lane}
    total_time = sum(tally.lane_seconds.values()) or 1.0
    review_minutes = counts[Lane.REVIEW] * settings.review_seconds_per_image / 60
    lanes = {}
    for lane in Lane:
        machine = machine_cost * tally.lane_seconds.get(lane.value, 0.0) / total_time
        retouch = (
            review_minutes / 60 * settings.retoucher_hourly_rate if lane == Lane.REVIEW else 0.0
        )
        lanes[lane.value] = LaneCost(
            images=counts[lane],
            machine=round(machine, 4),
            retouch=round(retouch, 2),
            total=round(machine + retouch, 2),
            per_image=round((machine + retouch) / counts[lane], 4) if counts[lane] else 0.0,
        )
    total = tally.total
    return CostReport(
        currency=settings.currency,
        wall_minutes=round(wall_seconds / 60, 2),
        review_minutes=round(review_minutes, 2),
        machine_cost=round(machine_cost, 4),
        per_image=round(machine_cost / total, 5) if total else 0.0,
        lanes=lanes,
        cpu_seconds_by_stage={k: round(v, 2) for k, v in sorted(tally.cpu_seconds.items())},
    )


def time_chart_png(report: CostReport, job_id: str) -> bytes:
    """Bar chart: wall-clock minutes of the AI lane against estimated retoucher minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # constrained layout keeps the title and the long bar labels inside the picture
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=100, layout="constrained")
    labels = ["AI lane (machine, wall clock)", "Review lane (retoucher, estimated)"]
    values = [report.wall_minutes, report.review_minutes]
    bars = ax.barh(labels, values, color=["#2b7bb9", "#e08a2c"])
    ax.bar_label(bars, labels=[f"{v:.1f} min" for v in values], padding=4)
    ax.set_xlabel("minutes")
    fig.suptitle(f"Shoot {job_id}: where the time goes", wrap=True)
    ax.set_xlim(0, max([*values, 1.0]) * 1.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


BAR_WIDTH = 30  # characters of the longest bar in the text chart


def time_chart_markdown(report: CostReport, job_id: str, png: bytes) -> str:
    """The time chart as the run page shows it: the picture itself (embedded, so it needs no
    link that could expire or point at one host's disk) and the same figures as text bars,
    readable where pictures are not shown."""
    import base64

    rows = [
        ("AI lane (machine, wall clock)", report.wall_minutes),
        ("Review lane (retoucher, estimated)", report.review_minutes),
    ]
    longest = max([value for _, value in rows] + [1e-9])
    lines = [
        f"# Shoot {job_id}: where the time goes",
        "",
        f"![Time chart of shoot {job_id}](data:image/png;base64,{base64.b64encode(png).decode()})",
        "",
        "| | minutes | |",
        "|---|---|---|",
    ]
    for label, value in rows:
        bar = "█" * max(1 if value > 0 else 0, round(BAR_WIDTH * value / longest))
        lines.append(f"| {label} | {value:.1f} | {bar or '·'} |")
    return "\n".join(lines)
