"""The calendar: the demo and the tests mean the same thing on whatever day they run."""

from __future__ import annotations

import csv
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cutline.imaging.samples import DEFAULT_SAMPLES, Sample, write_sample_shoot
from cutline.services.review_queue import parse_deadline

ROOT = Path(__file__).resolve().parent.parent
# An ISO date or a day/month/year date written into code: a deadline that will one day pass.
FIXED_DATE = re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b|\b[0-3]?\d/[01]?\d/(?:19|20)\d\d\b")


@pytest.mark.parametrize(
    "today",
    [
        date.today(),
        date.today() + timedelta(days=365),  # the suite is also run with the clock a year ahead
        date(2028, 2, 29),  # a leap day
        date(2030, 12, 31),  # the last day of a year
    ],
)
def test_demo_reviews_are_not_overdue_on_the_day_the_demo_runs(tmp_path, today):
    manifest = write_sample_shoot(tmp_path, DEFAULT_SAMPLES, size=(64, 48), today=today)
    with manifest.open(encoding="utf-8") as fh:
        deadlines = {row["sku"]: row["deadline"] for row in csv.DictReader(fh)}
    end_of_today = datetime.combine(today, datetime.max.time(), tzinfo=UTC)
    for sample in DEFAULT_SAMPLES:
        deadline = parse_deadline(deadlines[sample.sku])
        assert deadline is not None and deadline > end_of_today, (sample.sku, deadline)
        assert deadlines[sample.sku] == sample.deadline(today)


def test_a_sample_due_in_the_past_is_overdue(tmp_path):
    """The counterpart: a negative due_in_days gives a deadline that has passed."""
    overdue = Sample("o.jpg", "O-1", "homeware", "box", (1, 2, 3), "web", -1)
    deadline = parse_deadline(overdue.deadline())
    assert deadline is not None and deadline < datetime.now(UTC)


def test_no_fixed_calendar_date_in_the_tests_or_the_demo_samples():
    """Dates in tests and samples are computed from today; a literal one will expire one day."""
    files = [*sorted((ROOT / "tests").glob("*.py")), ROOT / "cutline" / "imaging" / "samples.py"]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        if path.name != Path(__file__).name
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FIXED_DATE.search(line)
    ]
    assert found == []
