"""What every `somna` command shares: exit codes, opening the stores, loading the model, printing JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from somna import progress
from somna.app import embedder_for, open_memory
from somna.config import Settings
from somna.embeddings import Embedder, LazyEmbedder
from somna.scopes import Memory

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def load_embedder(settings: Settings, *, wait: bool = True) -> Embedder | None:
    """The embedding model the settings name, waited for with a spinner (or only started, unless `wait`)."""
    embedder = embedder_for(settings)
    if isinstance(embedder, LazyEmbedder):
        if not wait:
            embedder.start()
        else:
            with progress.spinner("loading the embedding model"):
                embedder.wait()
            if not embedder.ready:
                print(f"embedding model unavailable ({embedder.error}); using words only", file=sys.stderr)
    return embedder


def open_stores(args: argparse.Namespace, *, model: bool = False, wait: bool = True) -> Memory:
    """The stores, with the embedding model when `model` (waited for, unless `wait` is False)."""
    settings = Settings.from_env(store=args.store)
    return open_memory(settings, load_embedder(settings, wait=wait) if model else None)
