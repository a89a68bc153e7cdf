#!/usr/bin/env bash
# Test Cutline against the newest Prefect 3.x on the package registry (the last step of
# scripts/test.sh). pyproject.toml pins the Prefect range Cutline was tested with; this says
# early whether the next release still works, before anyone raises the pin.
#   - The registry has nothing newer than the Prefect in .venv: the contract tests of the
#     private Prefect APIs Cutline wraps (tests/test_prefect_internals.py) run there, seconds.
#   - It has a newer 3.x: a second virtualenv, .venv-prefect-newest, gets the project with that
#     Prefect (kept between runs), and the contract tests and the review-lane tests run there.
#   bash scripts/test_newest_prefect.sh                          as CI runs it
#   CUTLINE_PREFECT_VERSION=3.9.0 bash scripts/test_newest_prefect.sh   one given version instead
set -euo pipefail
cd "$(dirname "$0")/.."

CONTRACT_TESTS=(tests/test_prefect_internals.py)
# The review lane's core, end to end (suspended runs made by the shoot, resumed, landed), kept
# to a few minutes so that CI stays well inside its 30 when a new Prefect has to be installed.
REVIEW_LANE_TESTS=(tests/test_prefect_internals.py tests/test_review_form.py
  tests/test_review.py::test_each_review_image_waits_in_its_own_suspended_run_ordered_by_deadline
  tests/test_review.py::test_reviews_wait_without_starting_a_process_until_a_retoucher_answers
  tests/test_review.py::test_retoucher_decisions_land_once_and_survive_a_rerun_and_a_restart
  tests/test_schedules.py)  # the UI's schedules survive re-registration (keep_server_schedules)
NEWEST_VENV=.venv-prefect-newest

installed=$(.venv/bin/python -c 'import prefect; print(prefect.__version__)')
if [ -n "${CUTLINE_PREFECT_VERSION:-}" ]; then
  newest="$CUTLINE_PREFECT_VERSION"
else
  newest=$(.venv/bin/python - <<'EOF'
import subprocess
import sys

from packaging.version import InvalidVersion, Version

listing = subprocess.run(
    [sys.executable, "-m", "pip", "index", "versions", "prefect", "--disable-pip-version-check"],
    capture_output=True,
    text=True,
)
available = [line for line in listing.stdout.splitlines() if line.startswith("Available versions:")]
if listing.returncode != 0 or not available:
    sys.exit(
        "Could not list Prefect's versions on the package registry (`pip index versions "
        f"prefect` answered {listing.returncode}): {listing.stderr.strip() or listing.stdout.strip()}"
        "\nCheck the network or pip's index settings, then run scripts/test_newest_prefect.sh again."
    )
versions = []
for text in available[0].split(":", 1)[1].split(","):
    try:
        versions.append(Version(text.strip()))
    except InvalidVersion:
        pass
print(max(v for v in versions if v.major == 3 and not v.is_prerelease))
EOF
)
fi

newer=$(.venv/bin/python -c 'import sys; from packaging.version import Version as V; print(int(V(sys.argv[1]) != V(sys.argv[2])))' "$newest" "$installed")
if [ "$newer" = "0" ]; then
  echo "== Prefect $installed (installed in .venv) is the newest Prefect 3.x on the registry:" \
    "running the Prefect contract tests only"
  .venv/bin/python -m pytest -q "${CONTRACT_TESTS[@]}"
  echo "== Prefect contract tests passed on Prefect $installed"
  exit 0
fi

# CI must end inside its 30 minutes: installing and testing a new Prefect takes about 7. When
# scripts/test.sh has used more than CUTLINE_NEWEST_PREFECT_AFTER_S (default 21 min) already, say
# so loudly and leave this check to a run of its own.
used=${CUTLINE_CI_SECONDS_USED:-0}
if [ "$used" -gt "${CUTLINE_NEWEST_PREFECT_AFTER_S:-1260}" ]; then
  echo "== WARNING: Prefect $newest is newer than the tested $installed, but this run has used" \
    "${used} s already: NOT tested here. Run \`bash scripts/test_newest_prefect.sh\` on its own" \
    "before raising the pin in pyproject.toml." >&2
  exit 0
fi
echo "== Newest Prefect 3.x on the registry: $newest (.venv has $installed):" \
  "testing it in $NEWEST_VENV"
if [ ! -x "$NEWEST_VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$NEWEST_VENV"
fi
pip=("$NEWEST_VENV/bin/python" -m pip --quiet --disable-pip-version-check)
# The project's dependencies and test tools as pyproject.toml lists them, with Prefect pinned to
# the newest (outside the tested range pyproject pins, so the project itself goes in --no-deps).
.venv/bin/python - "$newest" >"$NEWEST_VENV/requirements.txt" <<'EOF'
import sys
import tomllib

from packaging.requirements import Requirement

with open("pyproject.toml", "rb") as file:
    project = tomllib.load(file)["project"]
for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
    print(f"prefect=={sys.argv[1]}" if Requirement(spec).name == "prefect" else spec)
EOF
"${pip[@]}" install -r "$NEWEST_VENV/requirements.txt"
"${pip[@]}" install --no-deps -e .
tested=$("$NEWEST_VENV/bin/python" -c 'import prefect; print(prefect.__version__)')
if [ "$tested" != "$newest" ]; then
  echo "$NEWEST_VENV has Prefect $tested, not $newest: delete $NEWEST_VENV and run again" >&2
  exit 1
fi
echo "== Testing Prefect $tested: contract and review-lane tests"
"$NEWEST_VENV/bin/python" -m pytest -q "${REVIEW_LANE_TESTS[@]}" \
  -n "${CUTLINE_TEST_PROCESSES:-2}" --dist worksteal
echo "== Prefect contract and review-lane tests passed on Prefect $tested" \
  "(pyproject.toml pins $(grep -o '"prefect[^"]*"' pyproject.toml); raise the pin when ready)"
