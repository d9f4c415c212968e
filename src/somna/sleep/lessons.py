"""What the lessons the extract pass found in one transcript become: a new memory, the new details added to
the memory that already says the rest, or nothing when the store knows it all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from somna.embeddings import HashEmbedder
from somna.errors import InvalidInput, NotFound
from somna.sleep.actions import Action
from somna.sleep.prompts import Lesson
from somna.text import DUPLICATE_WORDS, details, missing, sentences, word_overlap

if TYPE_CHECKING:
    from somna.sleep.cycle import Cycle
    from somna.store import Store


class Dedupe:
    """Is a lesson already known? Candidates come from the store's search; similarity is the cosine of the
    cycle's embedder (the one the snapshot used) or word overlap. Lessons of this cycle count too."""

    def __init__(self, store: Store, cycle: Cycle) -> None:
        self.store = store
        self.threshold = cycle.th.duplicate
        emb = store.embedder
        self.emb = emb if emb is not None and emb.ready else HashEmbedder()
        # memories this cycle archives or supersedes: known, but no place to add a detail to
        self.leaving = {ref for a in cycle.actions if a.kind in ("merge", "archive") for ref in a.targets}
        self.leaving |= {a.data["old"] for a in cycle.actions if a.kind == "supersede"}
        self.seen: list[tuple[Any, str]] = []

    def _vec(self, text: str) -> Any:
        v = np.asarray(self.emb.embed([text])[0], dtype=np.float32)
        n = float(np.linalg.norm(v))
        return v / n if n else v

    def _similar(self, vec: Any, text: str, other_vec: Any, other: str) -> float | None:
        """The cosine if the two are near-duplicates (by meaning or by nearly the same words), else None."""
        cos = float(vec @ other_vec)
        same_words = word_overlap(text, other) >= DUPLICATE_WORDS
        return cos if cos >= self.threshold or same_words else None

    def find(self, title: str, content: str) -> tuple[str, float, str, str | None] | None:
        """(id, similarity, text, version or None if it is leaving) of the nearest duplicate, or None."""
        text = f"{title}\n{content}"
        vec = self._vec(text)
        best: tuple[str, float, str, str | None] | None = None
        for other_vec, other in self.seen:
            sim = self._similar(vec, text, other_vec, other)
            if sim is not None:
                best = ("(this cycle)", sim, other, None)
        if best is None:
            for hit in self.store.search(text[:1900], limit=5)["hits"]:
                try:
                    cur = self.store.read(hit["id"])
                except (NotFound, InvalidInput):
                    continue
                other = f"{cur['title']}\n{cur['content']}"
                sim = self._similar(vec, text, self._vec(other), other)
                if sim is not None and (best is None or sim > best[1]):
                    best = (
                        hit["id"],
                        sim,
                        cur["content"],
                        None if hit["id"] in self.leaving else cur["version"],
                    )
        if best is None or best[3] is None:
            self.seen.append((vec, text))
        return best


def lesson_actions(dedupe: Dedupe, rel: str, lessons: list[Lesson]) -> list[Action]:
    """The actions for the lessons found in the transcript `rel`: new memories, details appended to a known
    memory, and last the inbox action that moves the transcript to inbox/processed/."""
    out: list[Action] = []
    known: list[str] = []
    for lesson in lessons:
        tags = sorted(set(lesson.tags) | ({"fix"} if lesson.type == "fix" else set()))
        kind = "lesson" if lesson.type == "fix" else lesson.type
        dup = dedupe.find(lesson.title, lesson.content)
        if dup is None:
            out.append(
                Action(
                    "extract",
                    f"learned from {rel}: {lesson.title}",
                    {},
                    {"transcript": rel},
                    {"title": lesson.title, "content": lesson.content, "type": kind, "tags": tags},
                )
            )
            continue
        ref, sim, body, version = dup
        new = [s for s in sentences(lesson.content) if missing(body, details(s).all())]
        if not new:
            known.append(ref)
        elif version is None:  # the duplicate is going away in this cycle: the detail gets its own memory
            out.append(
                Action(
                    "extract",
                    f"learned from {rel}: {lesson.title}",
                    {},
                    {"transcript": rel},
                    {"title": lesson.title, "content": lesson.content, "type": kind, "tags": tags},
                )
            )
        else:
            add = " ".join(new)
            out.append(
                Action(
                    "extract",
                    f"{rel} adds {sorted(missing(body, details(add).all()))[:6]} to {ref}",
                    {ref: version},
                    {"transcript": rel, "similarity": round(sim, 3)},
                    {"append": add},
                )
            )
    out.append(
        Action(
            "inbox",
            f"{rel}: {len(lessons)} found, {len(out)} new or added, {len(known)} known "
            "already; moved to inbox/processed/",
            {},
            {"known": known},
            {"path": rel},
        )
    )
    return out
