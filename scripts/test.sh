#!/usr/bin/env bash
# Set up from nothing and run every check: lint, format, and the whole test suite
# (real u2netp model, real Prefect server, real browser where a UI is involved).
#   bash scripts/test.sh                  everything, as CI runs it
#   bash scripts/test.sh tests/x.py -k y  setup and lint, then only the pytest arguments given
# CUTLINE_TEST_CLOCK=+365d runs the tests with the clock moved (Debian's faketime), e.g. to
# prove nothing depends on today's date; the tests marked real_clock (S3, PostgreSQL) are left
# out then, as those servers keep the real time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports  # the one-way layers of pyproject.toml [tool.importlinter]

pytest=(.venv/bin/python -m pytest)
slow="slow"
if [ -n "${CUTLINE_TEST_CLOCK:-}" ]; then
  pytest=(faketime -f "${CUTLINE_TEST_CLOCK}" "${pytest[@]}")
  # SeaweedFS and PostgreSQL keep the real time: their tests cannot run with a moved clock.
  slow="slow and not real_clock"
fi

if [ "$#" -gt 0 ]; then
  exec "${pytest[@]}" "$@"
fi
# 1. The fast tests in a random order (the seed is printed; repeat an order with
#    -p randomly --randomly-seed=N): no test may depend on another having run before it.
#    Steps 1 and 2 are shared out like step 3 (CI must end well inside 30 minutes).
"${pytest[@]}" -m "not slow" -p randomly -n "${CUTLINE_TEST_PROCESSES:-2}"
# 2. The calendar: the date-dependent tests again with the clock a year ahead, so a deadline
#    that would expire fails today, not on the day it expires.
faketime -f +365d .venv/bin/python -m pytest tests/test_calendar.py tests/test_manifest.py \
  tests/test_review.py -k "not retoucher_decisions and not corrected_manifest and not still_starting" \
  -n "${CUTLINE_TEST_PROCESSES:-2}"
# 3. The slow tests (real model, Prefect server, S3 server, browser), shared out to
#    CUTLINE_TEST_PROCESSES pytest processes (pytest-xdist; default 2), each with its own
#    Prefect server, S3 server and data root: most of a slow test is waiting on servers and
#    subprocesses, so two at once take about 60% of the time of one after the other.
"${pytest[@]}" -m "$slow" -n "${CUTLINE_TEST_PROCESSES:-2}" --dist worksteal --durations=12
# 4. The newest Prefect 3.x on the package registry: the contract tests of the private Prefect
#    APIs Cutline wraps, and when it is newer than the pinned one, the review-lane tests too, in
#    a second virtualenv (.venv-prefect-newest). Seconds when nothing is newer.
CUTLINE_CI_SECONDS_USED=$SECONDS bash scripts/test_newest_prefect.sh
