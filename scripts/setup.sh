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
# Load the embedding model once: this exports its ONNX form to the cache (~/.cache/somna), so that
# every later start runs it on onnxruntime without importing torch. Offline: the model is on disk.
.venv/bin/somna model >&2 || echo "the embedding model did not load; somna will search on words alone" >&2
echo "somna is installed: .venv/bin/somna --help" >&2
