"""LLM passes through litellm, when a model is configured (see somna.toml [llm]). Placeholder seam:
returns no passes until a model is configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from somna.sleep.cycle import ExtraPass
    from somna.store import Store


def llm_passes(store: Store) -> list[ExtraPass]:
    return []
