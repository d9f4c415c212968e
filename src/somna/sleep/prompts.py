"""What the LLM passes ask a model, and the shape each answer must have.

Each prompt goes with the pydantic model that checks its answer (llm_client.parse): a prompt that asks for a
new field needs the model to allow it, since the models forbid anything they do not name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Str = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lesson(_Strict):
    type: Literal["lesson", "preference", "fact", "fix", "decision", "procedure"]
    title: Annotated[Str, StringConstraints(max_length=120)]
    content: Annotated[Str, StringConstraints(min_length=10, max_length=2000)]
    tags: Annotated[
        list[Annotated[Str, StringConstraints(max_length=40, pattern=r"^[a-z0-9][a-z0-9._/-]*$")]],
        Field(max_length=8),
    ] = []

    @field_validator("tags", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return (
            [t.strip().lower().replace(" ", "-") if isinstance(t, str) else t for t in v]
            if isinstance(v, list)
            else v
        )


class Extracted(_Strict):
    memories: Annotated[list[Lesson], Field(max_length=12)]


class Verdict(_Strict):
    holds: Literal["A", "B", "both", "unsure"]
    reason: Annotated[Str, StringConstraints(max_length=400)]


class Written(_Strict):
    title: Annotated[Str, StringConstraints(max_length=120)]
    content: Annotated[Str, StringConstraints(max_length=8000)]


class Moved(_Strict):
    title: Annotated[Str, StringConstraints(max_length=120)]
    content: Annotated[Str, StringConstraints(max_length=4000)]


class Compressed(_Strict):
    text: Annotated[Str, StringConstraints(max_length=20_000)]
    moved: Annotated[list[Moved], Field(max_length=8)] = []


class SkillDraft(_Strict):
    name: Annotated[Str, StringConstraints(max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
    description: Annotated[Str, StringConstraints(min_length=20, max_length=1024)]
    body: Annotated[Str, StringConstraints(min_length=40, max_length=20_000)]


EXTRACT = """You read the transcript of a coding agent's session and write down what is worth remembering in \
later sessions: lessons, the user's preferences, facts about the project or its environment, and fixes \
(symptom, cause, fix). Each item is small and specific: one idea, 1 to 4 sentences, keeping the exact \
commands, flags, paths, numbers, versions and error messages. Leave out what is generic, obvious or only \
true for this session, and never copy secrets. If nothing is worth keeping, answer {"memories": []}.
Answer with JSON only, in exactly this shape:
{"memories": [{"type": "lesson|preference|fact|fix|decision|procedure", "title": "at most 80 characters", \
"content": "...", "tags": ["lowercase-tag"]}]}"""

JUDGE = """Two memories of a coding agent seem to contradict each other. Decide which one holds now: A, B, \
both (they do not really contradict), or unsure. Prefer the one that is more recent or that explicitly \
corrects the other. Answer with JSON only: {"holds": "A|B|both|unsure", "reason": "one sentence"}"""

MERGE = """These memories of a coding agent say nearly the same thing. Write ONE memory that says everything \
they say, shorter where they repeat each other. Keep every detail verbatim: numbers, units, paths, flags, \
commands, identifiers, URLs, names. Add nothing. Answer with JSON only: {"title": "...", "content": "..."}"""

COMPRESS = """This is a core memory block that a coding agent reads at the start of every session. Rewrite it \
to at most {target} characters. Every number, path, flag, command, identifier and URL must survive verbatim, \
either in the block or in a memory you move it to. Answer with JSON only: \
{{"text": "the new block", "moved": [{{"title": "...", "content": "details moved out of the block"}}]}}"""

SKILL = (
    "These memories of a coding agent describe the same kind of task, met again and again. Turn them into one "
    "Agent Skill: a short procedure that another agent can follow the next time. Keep every command, flag, "
    "path, number and identifier from the memories verbatim; add nothing you were not told. Answer with JSON "
    'only: {"name": "lowercase-words-joined-by-hyphens, at most 64 characters", "description": "what the '
    'skill does and when to use it, one or two sentences", "body": "Markdown: when to use it, numbered steps, '
    'pitfalls"}'
)
