"""The stores one process serves: a project store (when the working directory has one) and the user store."""

from __future__ import annotations

import logging
from typing import Any

from somna.errors import InvalidInput, NotFound, SomnaError, StoreNotFound
from somna.store import Store

log = logging.getLogger("somna.scopes")


class Memory:
    """Several stores behind one API: search spans them all; a write says where it goes."""

    def __init__(self, stores: dict[str, Store]) -> None:
        if not stores:
            raise StoreNotFound("no store to open")
        self.stores = stores

    @property
    def default(self) -> Store:
        return next(iter(self.stores.values()))

    def store(self, scope: str | None = None) -> Store:
        if scope is None:
            return self.default
        if scope not in self.stores:
            raise InvalidInput(f"no {scope!r} store here; scopes: {', '.join(self.stores)}")
        return self.stores[scope]

    def locate(self, ref: str, scope: str | None = None) -> Store:
        """The store that holds a memory or block, searching project first."""
        if scope is not None:
            return self.store(scope)
        last: SomnaError | None = None
        for store in self.stores.values():
            try:
                store.locate(ref)
                return store
            except NotFound as exc:
                last = exc
        if len(self.stores) == 1 and last is not None:
            raise last
        raise NotFound(
            f"no memory or block {ref!r} in the {' or '.join(self.stores)} store; search to find ids"
        )

    def search(
        self, query: str, *, scope: str | None = None, limit: int = 8, **kwargs: Any
    ) -> dict[str, Any]:
        stores = [self.store(scope)] if scope else list(self.stores.values())
        results = [s.search(query, limit=limit, **kwargs) for s in stores]
        hits = sorted((h for r in results for h in r["hits"]), key=lambda h: -h["score"])[:limit]
        out: dict[str, Any] = {"mode": results[0]["mode"], "hits": hits}
        notes = {r["note"] for r in results if r.get("note")}
        if notes:
            out["note"] = "; ".join(sorted(notes))
        return out

    def sync(self) -> None:
        for store in self.stores.values():
            try:
                store.sync()
            except SomnaError as exc:
                log.warning("could not sync %s: %s", store.root, exc)

    def backfill(self) -> None:
        for store in self.stores.values():
            store.backfill_vectors()

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
