#!/usr/bin/env bash
# Set up somna in ./.venv: the one command a newcomer runs after cloning.
# torch is pinned first so that sentence-transformers finds it satisfied and pip
# never reaches for the multi-GB CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "somna is installed: .venv/bin/somna --help" >&2
