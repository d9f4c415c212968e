"""What the LLM passes remember from one cycle to the next, so that none asks the model twice for the same
thing: one file, .somna/sleep/llm-state.json, written when a pass ends (never on a dry run).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from somna import notes

if TYPE_CHECKING:
    from somna.store import Store


class PassState:
    """What the LLM passes remember between cycles (.somna/sleep/llm-state.json): failed attempts per
    transcript, the blocks already offered for compression (by content hash) and the memories already
    offered for a skill (each is offered once, so a rejected draft is not asked for again every cycle)."""

    def __init__(self, store: Store, dry_run: bool) -> None:
        self.path = store.root / ".somna" / "sleep" / "llm-state.json"
        self.dry_run = dry_run
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            self.data = {}
        self.data.setdefault("attempts", {})
        self.data.setdefault("compressed", [])
        self.data.setdefault("skilled", [])

    def failed(self, rel: str) -> int:
        self.data["attempts"][rel] = int(self.data["attempts"].get(rel, 0)) + 1
        return int(self.data["attempts"][rel])

    def forget(self, rel: str) -> None:
        self.data["attempts"].pop(rel, None)

    def seen(self, digest: str) -> bool:
        return digest in self.data["compressed"]

    def mark(self, digest: str) -> None:
        self.data["compressed"] = (self.data["compressed"] + [digest])[-200:]

    def save(self) -> None:
        if self.dry_run:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        notes.atomic_write(self.path, json.dumps(self.data, indent=2) + "\n")
