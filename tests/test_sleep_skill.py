"""Sleep-time turns a procedure that recurs into an Agent Skill, over real HTTP to a stub model on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import somna
from test_sleep_llm import StubLLM, cycle, git, make_store, stub, user_text  # noqa: F401 (stub is a fixture)

RELEASES = [
    "Releasing the CLI: run `make dist`, then `twine upload dist/*` with --skip-existing; tag v1.4.0 first.",
    "To release: tag the version (v1.5.0), `make dist`, `twine upload dist/*` --skip-existing, then announce.",
    "Release steps that worked: bump the tag to v1.6.0, `make dist`, and `twine upload dist/*` --skip-existing.",
]

BODY = (
    "Use when publishing a new version of the CLI.\n\n1. Tag the version (e.g. v1.6.0).\n2. Run `make dist`.\n"
    "3. Run `twine upload dist/*` with --skip-existing.\n"
)


def draft(body: str = BODY, name: str = "release-the-cli") -> str:
    return json.dumps(
        {
            "name": name,
            "description": "Publish a new CLI release to the package index: tag, build, upload.",
            "body": body,
        }
    )


def test_a_recurring_procedure_becomes_a_reviewed_skill(
    tmp_path: Path,
    stub: StubLLM,  # noqa: F811 (the fixture imported above, as pytest passes it)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch)
    for text in RELEASES:
        store.write(text, type="procedure", author="agent", force=True)
    store.write("The staging DB listens on port 5433.", type="fact", author="agent")

    def reply(body: dict[str, Any]) -> str:
        if "Agent Skill" in body["messages"][0]["content"]:
            assert all(r.split(":")[0][:20] in user_text(body) for r in RELEASES)
            return draft()
        return '{"memories": []}'

    stub.reply = reply
    report = cycle(store)
    (queued,) = [q for q in report.queued if q["kind"] == "skill"]
    assert queued["data"]["name"] == "release-the-cli" and len(queued["evidence"]["sources"]) == 3
    assert not (store.root / "skills" / "release-the-cli").exists()  # reviewed first

    store.accept(queued["proposal"], author="human")
    skill_md = (store.root / "skills" / "release-the-cli" / "SKILL.md").read_text(encoding="utf-8")
    assert "twine upload dist/*" in skill_md and "sources:" in skill_md
    assert "release-the-cli" in git(store.root, "log", "--format=%s", "-5")
    check = somna("--store", str(store.root), "skills", "check")
    assert check.returncode == 0, check.stdout + check.stderr

    asked = len(stub.requests)
    cycle(store)  # the same memories are not offered again
    assert not any("Agent Skill" in r["messages"][0]["content"] for r in stub.requests[asked:])


def test_a_skill_that_drops_a_recurring_detail_is_not_proposed(
    tmp_path: Path,
    stub: StubLLM,  # noqa: F811 (the fixture imported above, as pytest passes it)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch)
    for text in RELEASES:
        store.write(text, type="procedure", author="agent", force=True)
    stub.reply = lambda body: (
        draft(BODY.replace(" with --skip-existing", ""))
        if "Agent Skill" in body["messages"][0]["content"]
        else '{"memories": []}'
    )
    report = cycle(store)
    assert not [q for q in report.queued if q["kind"] == "skill"] and not pending_skills(store)
    assert any("not proposed" in n and "--skip-existing" in n for n in report.notes), report.notes

    store2 = make_store(tmp_path / "s2", stub, monkeypatch)
    for text in RELEASES:
        store2.write(text, type="procedure", author="agent", force=True)
    stub.reply = lambda body: '{"name": "Not A Valid Name!", "description": "x", "body": "y"}'
    report = cycle(store2)
    assert any("unusable LLM answer for skill" in n for n in report.notes)
    assert [p.name for p in (store2.root / "skills").iterdir() if p.is_dir()] == []


def pending_skills(store: Any) -> list[dict[str, Any]]:
    return [p for p in store.proposals() if p.get("kind") == "sleep" and p.get("op") == "skill"]
