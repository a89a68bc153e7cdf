#!/usr/bin/env bash
# Set up Cutline from nothing: a virtualenv in .venv with the project installed.
#   bash scripts/setup.sh          runtime only
#   bash scripts/setup.sh --test   plus test tools (pytest, ruff, playwright + Debian chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

# Say what is happening: a first setup takes minutes (onnxruntime, Prefect and their
# dependencies are several hundred MB), and a silent terminal looks hung.
step() { echo "[setup $(date +%H:%M:%S)] $*"; }

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  step "creating the virtualenv .venv"
  "$PYTHON" -m venv .venv
fi
step "upgrading pip"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip

if [ "${1:-}" = "--test" ]; then
  step "installing Cutline with its test tools (a few minutes the first time)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
  # Browser tests drive Debian's chromium through playwright (no browser download); the
  # calendar check runs tests with the clock moved ahead by Debian's faketime.
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v faketime >/dev/null 2>&1 || missing+=(faketime)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
      step "installing Debian's ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "The tests need Debian's ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
      exit 1
    fi
  fi
else
  step "installing Cutline (a few minutes the first time)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi

# The models: the run's (u2netp) and every model the shipped rules name (MODNet, the fallback
# of doubtful cutouts), from their offline sources (md5-verified), into the model home.
step "fetching the models the shipped rules use (md5-checked)"
.venv/bin/cutline models fetch
echo "Cutline is set up in $(pwd)/.venv"
