"""What an agent is told at the start of a session: how to use somna, the core blocks, the skills catalog.

The MCP server puts it in its instructions (within SOMNA_INSTRUCTIONS_BUDGET); `somna context` prints it
for harnesses that inject a hook's output as context (Claude Code's SessionStart), where the ~2 KB cap
that Claude Code puts on server instructions does not apply. No MCP import here: the hook must be quick.
"""

from __future__ import annotations

from somna import untrusted
from somna.app import catalog_for, open_memory
from somna.config import Settings
from somna.errors import SomnaError
from somna.scopes import Memory

GUIDE = """\
somna is your long-term memory for this user and project: search it before you act, and write down \
what you learn, so that no mistake is made twice and nothing settled is asked again.
- Before a task or decision: `search` (a few words); `read` a hit for its full text.
- After learning something durable (a fix, a preference, a decision and its why, a command that \
worked): `write` one specific memory with the exact commands, paths, numbers. Never secrets.
- To correct or extend a memory: `propose_edit` with the `version` from `read` (never write a copy).
- After using memories: `feedback` helpful or harmful. `history` and `revert` undo any change.
"""


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def compose_instructions(memory: Memory, budget_tokens: int, skills: tuple[str, str] = ("", "")) -> str:
    """Guidance first, then the core blocks, all within the token budget; nothing silently cut.

    `skills` (a line after the guidance, the catalog at the end) has a budget of its own.
    """
    parts = [GUIDE, skills[0]]
    left = budget_tokens - _tokens(GUIDE)
    for scope, store in memory.stores.items():
        for name in store.block_names():
            try:
                block = store.read(f"block:{name}")
            except SomnaError:
                continue
            body = block["content"].strip()
            if not body:
                continue
            caution = (
                f" ({block.get('trust', 'agent')}-written; {untrusted.WARNING})" if block.get("flags") else ""
            )
            head = f"\n## {scope} block: {name}{caution}\n"
            text = head + body + "\n"
            if _tokens(text) > left:
                room = max(0, (left - _tokens(head) - 20) * 4)
                text = (
                    head
                    + body[:room].rstrip()
                    + f"\n[… cut to fit; read resource somna://blocks/{scope}/{name}]\n"
                )
                if room <= 0:
                    text = f"\n(block {scope}/{name} not shown: over budget; read somna://blocks/{scope}/{name})\n"
            parts.append(text)
            left -= _tokens(text)
    parts.append(skills[1])
    return "".join(parts)


CONTEXT_BUDGET = 4000  # tokens: a SessionStart hook's output is not cut at 2 KB like server instructions
SKILLS_BUDGET = 1500


def session_context(
    settings: Settings, *, budget: int = CONTEXT_BUDGET, skills_budget: int = SKILLS_BUDGET
) -> str:
    """The guidance, every core block and the skills catalog of the stores `settings` opens, within budget."""
    memory = open_memory(settings, None)
    try:
        catalog = catalog_for(memory, settings, budget=skills_budget)
        text = compose_instructions(memory, budget, catalog.instructions())
    finally:
        memory.close()
    return "# somna: memory for this session\n\n" + text
