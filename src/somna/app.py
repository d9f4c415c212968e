"""The one composition root: the stores, the embedding model and the skills catalog, made from settings.

Every edge (the MCP server, the commands, the SessionStart context, the daemon) opens what it needs
here, so the way settings become objects is written once, and a store is always opened with every kind
of proposal it may have to accept: edits (the store's own), skills and sleep-time's actions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from somna import skill_store
from somna.config import Settings
from somna.embeddings import Embedder, HashEmbedder, LazyEmbedder, make_embedder
from somna.errors import StoreNotFound
from somna.scopes import Memory
from somna.skills import Catalog, budget_from_env, mounts_from_env
from somna.sleep import gate
from somna.store import Store


def embedder_for(settings: Settings) -> HashEmbedder | LazyEmbedder | None:
    """The embedder the settings name, not loaded yet (a LazyEmbedder loads on `start` or `wait`)."""
    return make_embedder(settings.embedder) if settings.embedder != "none" else None


def open_store(
    root: Path, *, scope: str = "user", embedder: Embedder | None = None, create: bool = False
) -> Store:
    """A store that can accept every kind of proposal; `create` makes it first if there is none."""
    try:
        store = Store(root, scope=scope, embedder=embedder)
    except StoreNotFound:
        if not create:
            raise
        store = Store.init(root, scope=scope, embedder=embedder)
    skill_store.register(store)
    gate.register(store)
    return store


def open_memory(settings: Settings, embedder: Embedder | None, *, create_user: bool = True) -> Memory:
    """The stores the settings name (the project store first, then the user store), behind one API."""
    stores: dict[str, Store] = {}
    try:
        for scope, path in settings.store_paths().items():
            stores[scope] = open_store(
                path, scope=scope, embedder=embedder, create=scope == "user" and create_user
            )
    except BaseException:
        for store in stores.values():
            store.close()
        raise
    return Memory(stores)


def catalog_for(memory: Memory, settings: Settings, **kwargs: Any) -> Catalog:
    """The skills of every open store and of the folders mounted by SOMNA_SKILLS_PATH; `budget` defaults to
    SOMNA_SKILLS_BUDGET."""
    kwargs.setdefault("budget", budget_from_env(os.environ))
    return Catalog.for_stores(memory.stores, mounts_from_env(os.environ, settings.cwd), **kwargs)
