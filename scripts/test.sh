#!/usr/bin/env bash
# Set up from nothing and run every check: lint, format, and the whole test suite
# (real u2netp model, real Prefect server, real browser where a UI is involved).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
