"""Skills in-process: validation with file and line, the catalog within its budget, search, confinement of
level 3, proposals, install, and the `somna skills` / `somna proposals` commands. Real files, real git."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, somna

from somna import skill_store
from somna.embeddings import HashEmbedder
from somna.errors import Conflict, InvalidInput, NotFound
from somna.scopes import Memory
from somna.server import compose_instructions
from somna.skills import Catalog, Root, check_paths, mounts_from_env, parse_skill, tokens
from somna.store import Store

sys.path.insert(0, str(REPO / "bench"))
from skills_catalog import generate  # noqa: E402

GOOD = """---
name: {name}
description: {desc}
license: MIT
metadata:
  author: tests
---
# {name}

Steps. Details in [the guide](references/guide.md).
"""


def make_skill(
    root: Path,
    name: str,
    desc: str = "Do the thing. Use when the thing is needed.",
    text: str | None = None,
    guide: str | None = "the guide\n",
) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(
        text if text is not None else GOOD.format(name=name, desc=desc), encoding="utf-8"
    )
    if guide is not None:
        (folder / "references").mkdir(exist_ok=True)
        (folder / "references" / "guide.md").write_text(guide, encoding="utf-8")
    return folder


def catalog_of(store: Store, *mounts: Path, budget: int = 600) -> Catalog:
    return Catalog.for_stores({"store": store}, mounts, budget=budget)


def git_log(root: Path) -> list[str]:
    out = subprocess.run(["git", "log", "--format=%an|%s"], cwd=root, capture_output=True, text=True)
    return out.stdout.splitlines()


def test_load_and_read_reference(store: Store) -> None:
    make_skill(store.root / "skills", "deploy-staging", "Deploy to staging. Use when asked to deploy.")
    (store.root / "skills" / "deploy-staging" / "scripts").mkdir()
    (store.root / "skills" / "deploy-staging" / "scripts" / "go.sh").write_text("echo go\n", encoding="utf-8")
    cat = catalog_of(store)
    assert cat.names() == ["deploy-staging"]
    out = cat.load("deploy-staging")
    assert out["content"].startswith("# deploy-staging") and "name:" not in out["content"]
    assert [f["path"] for f in out["files"]] == ["references/guide.md", "scripts/go.sh"]
    assert out["meta"] == {"license": "MIT", "metadata": {"author": "tests"}} and out["version"]
    assert cat.read_file("deploy-staging", "references/guide.md")["content"] == "the guide\n"
    with pytest.raises(NotFound, match="deploy-staging"):
        cat.load("deploy-stagin")  # a close match is suggested
    with pytest.raises(NotFound, match="no skill"):
        cat.load("nothing-like-it")


@pytest.mark.parametrize(
    "bad",
    [
        "../other/SKILL.md",
        "/etc/passwd",
        "references/../../other/SKILL.md",
        "..",
        "C:\\x",
        "a\x00b",
        "references\\guide.md",
        "link-out",
        "dir-out/secret.md",
    ],
)
def test_read_file_never_leaves_the_skill(store: Store, tmp_path: Path, bad: str) -> None:
    folder = make_skill(store.root / "skills", "one")
    make_skill(store.root / "skills", "other")
    secret = tmp_path / "secret.md"
    secret.write_text("TOP SECRET\n", encoding="utf-8")
    (folder / "link-out").symlink_to(secret)
    (folder / "dir-out").symlink_to(tmp_path)
    cat = catalog_of(store)
    with pytest.raises(InvalidInput) as err:
        cat.read_file("one", bad)
    assert "outside" in str(err.value) or "relative" in str(err.value)
    assert [f["path"] for f in cat.load("one")["files"]] == ["references/guide.md"]  # escapes are not listed


def test_read_file_limits(store: Store) -> None:
    folder = make_skill(store.root / "skills", "one")
    (folder / "assets").mkdir()
    (folder / "assets" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "references" / "huge.md").write_text("x" * 300_000, encoding="utf-8")
    cat = catalog_of(store)
    with pytest.raises(InvalidInput, match="binary"):
        cat.read_file("one", "assets/logo.png")
    with pytest.raises(InvalidInput, match="300,000 bytes"):
        cat.read_file("one", "references/huge.md")
    with pytest.raises(NotFound, match="references/guide.md"):
        cat.read_file("one", "references/nope.md")
    with pytest.raises(NotFound):
        cat.read_file("one", "references")


def malformed(root: Path) -> None:
    """The malformed skills of acceptance 4, and a few more."""
    make_skill(root, "no-front-matter", text="# Just a body\n")
    make_skill(root, "bad-yaml", text="---\nname: bad-yaml\ndescription: [unclosed\n---\nSee [x](gone.md).\n")
    make_skill(root, "mismatch", text=GOOD.format(name="another-name", desc="Mismatched."))
    make_skill(root, "huge-body", text=GOOD.format(name="huge-body", desc="Big.") + "x" * 5_000_000)
    (root / "binary").mkdir()
    (root / "binary" / "SKILL.md").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    make_skill(root, "no-description", text="---\nname: no-description\n---\nbody\n")
    make_skill(root, "long-description", desc="x" * 1100)
    make_skill(root, "Bad_Name", text=GOOD.format(name="Bad_Name", desc="Bad name."))
    make_skill(root, "broken-link", guide=None)
    (root / "empty-folder").mkdir()


def test_malformed_skills_reported_with_file_and_line(store: Store) -> None:
    root = store.root / "skills"
    make_skill(root, "good-one")
    malformed(root)
    cat = catalog_of(store)
    assert cat.names() == ["good-one"]
    problems = {s.name: s.problems for s in cat.invalid}
    expect = {
        "no-front-matter": (1, "no front matter"),
        "bad-yaml": (3, "not valid YAML"),
        "mismatch": (2, "does not match its folder"),
        "huge-body": (1, "the limit is 256,000"),
        "binary": (1, "not UTF-8"),
        "no-description": (1, "no `description:`"),
        "long-description": (3, "1,100 characters"),
        "Bad_Name": (1, "not a valid skill name"),
        "broken-link": (10, "broken reference: 'references/guide.md'"),
        "empty-folder": (1, "no SKILL.md"),
    }
    assert set(problems) == set(expect)
    assert [p.line for p in problems["bad-yaml"]] == [3, 5]  # every problem: the body is checked too
    for name, (line, text) in expect.items():
        found = [p for p in problems[name] if text in p.message]
        assert found, (name, [str(p) for p in problems[name]])
        assert found[0].line == line and found[0].file.endswith(f"{name}/SKILL.md"), str(found[0])
    listed = cat.search("")
    assert [s["name"] for s in listed["skills"]] == ["good-one"]
    assert {s["name"] for s in listed["invalid"]} == set(expect)
    with pytest.raises(InvalidInput, match="invalid"):
        cat.load("mismatch")
    line, listing = cat.instructions()
    assert "10 invalid" in line and "good-one" in listing


def test_warnings_keep_a_skill_served(tmp_path: Path) -> None:
    root = tmp_path / "claude-skills"
    make_skill(
        root,
        "claude-style",
        text="---\ndescription: Written for Claude Code. Use always.\n"
        "model: sonnet\nallowed-tools: [Read, Grep]\ncolour: blue\n---\nBody.\n",
    )
    skill = parse_skill(root / "claude-style", Root(root, "mount", False))
    assert skill.valid
    assert [(p.line, p.severity) for p in skill.problems] == [(1, "warning"), (5, "warning")]
    assert "colour" in skill.problems[1].message


@pytest.mark.parametrize("n, tier", [(10, "full"), (100, "count"), (1000, "count")])
def test_catalog_within_budget(store: Store, n: int, tier: str) -> None:
    queries = generate(store.root / "skills", n)
    memory = Memory({"store": store})
    cat = Catalog.for_stores(memory.stores, budget=600)
    assert len(cat.names()) == n and not cat.invalid
    added = tokens(compose_instructions(memory, 1500, cat.instructions())) - tokens(
        compose_instructions(memory, 1500)
    )
    assert 0 < added <= 600
    assert cat.tier() == tier
    line, listing = cat.instructions()
    assert f"{n}" in line and ("search_skills" in line or tier == "full")
    assert (cat.enum() is not None) == (tier != "count")
    if n == 1000:
        hits = [(q[0], [h["name"] for h in cat.search(q[1], limit=5)["skills"]]) for q in queries[::10]]
        assert sum(name in found for name, found in hits) / len(hits) >= 0.95
        assert all(found[0] == name for name, found in hits[:20])
    for budget, want in (
        (100_000, "full"),
        (n * 10, "names" if n > 10 else "full"),
        (40, "count"),
        (5, "none"),
    ):
        assert tokens("".join(cat.instructions(budget))) <= budget
        if n == 100:
            assert cat.tier(budget) == want, budget


def test_search_words_and_vectors(store: Store) -> None:
    root = store.root / "skills"
    make_skill(
        root, "rotate-tls-certs", "Renew and rotate TLS certificates on the load balancer before expiry."
    )
    make_skill(
        root, "squash-migrations", "Squash Django database migrations into one when there are too many."
    )
    cat = catalog_of(store)
    out = cat.search("certificate expired")
    assert out["mode"] == "words" and "no embedding model" in out["note"]
    assert out["skills"][0]["name"] == "rotate-tls-certs" and out["skills"][0]["matched"] == "words"
    cat.embedder = HashEmbedder()
    out = cat.search("django migrations")
    assert out["mode"] == "hybrid" and "note" not in out
    assert out["skills"][0]["name"] == "squash-migrations" and out["skills"][0]["matched"] == "meaning+words"
    generate(root, 40)  # too many to embed during a search: words answer until the background is done
    cat.refresh()
    out = cat.search("django migrations")
    assert out["mode"] == "words" and "40 skills is being computed" in out["note"]
    assert len(cat.embed()) == 42
    assert cat.search("django migrations")["mode"] == "hybrid"


def test_refresh_sees_add_edit_delete_and_shadowing(store: Store, tmp_path: Path) -> None:
    mount = tmp_path / "dot-claude" / "skills"
    make_skill(mount, "shared", "From the mounted folder.")
    cat = Catalog.for_stores(
        {"store": store}, mounts_from_env({"SOMNA_SKILL_DIRS": "dot-claude/skills"}, tmp_path)
    )
    assert cat.names() == ["shared"] and cat.skills["shared"].root.scope == "mount"
    assert not cat.refresh()
    make_skill(store.root / "skills", "shared", "From the store, it wins.")
    assert cat.refresh()
    assert cat.skills["shared"].description == "From the store, it wins."
    assert [s.root.scope for s in cat.shadowed] == ["mount"]
    (store.root / "skills" / "shared" / "SKILL.md").write_text(
        GOOD.format(name="shared", desc="Edited."), encoding="utf-8"
    )
    os.utime(store.root / "skills" / "shared" / "SKILL.md", ns=(1, 1))  # an edit that even keeps the size
    assert cat.refresh() and cat.skills["shared"].description == "Edited."

    shutil.rmtree(store.root / "skills" / "shared")
    assert cat.refresh() and cat.skills["shared"].root.scope == "mount" and not cat.shadowed


def test_propose_queue_accept_and_conflict(store: Store) -> None:
    text = GOOD.format(name="new-skill", desc="A learned procedure. Use when it recurs.").replace(
        " Details in [the guide](references/guide.md).", ""
    )
    out = skill_store.propose(store, "new-skill", text, author="claude-code", reason="seen three times")
    assert out["status"] == "proposed" and not (store.root / "skills" / "new-skill").exists()
    listed = {p["id"]: p for p in store.proposals()}
    assert (
        listed[out["proposal"]]["target"] == "skill:new-skill"
        and "+name: new-skill" in listed[out["proposal"]]["diff"]
    )
    applied = store.accept(out["proposal"], author="human")
    assert (
        applied["status"] == "applied"
        and (store.root / "skills" / "new-skill" / "SKILL.md").read_text(encoding="utf-8") == text
    )
    assert not (store.root / "proposals" / f"{out['proposal']}.md").exists()
    assert git_log(store.root)[:2] == [
        f"human|accept proposal {out['proposal']}: create skill:new-skill (proposed by claude-code)",
        "claude-code|propose create on skill:new-skill: seen three times",
    ]
    version = catalog_of(store).load("new-skill")["version"]
    with pytest.raises(InvalidInput, match="base_version"):
        skill_store.propose(store, "new-skill", text, author="a")
    edit = skill_store.propose(
        store, "new-skill", text + "\n3. Also this.\n", author="a", base_version=version
    )
    skill_store.propose(store, "new-skill", text + "\n3. Or that.\n", author="b", base_version=version)
    store.accept(edit["proposal"], author="human")
    with pytest.raises(Conflict) as err:
        store.accept(store.proposals()[0]["id"], author="human")
    assert "Also this" in err.value.current_text
    with pytest.raises(InvalidInput, match="does not match its folder"):
        skill_store.propose(store, "other-name", text, author="a")
    with pytest.raises(InvalidInput, match="no front matter"):
        skill_store.propose(store, "plain", "just text", author="a")
    with pytest.raises(NotFound):
        skill_store.propose(
            store, "missing", text.replace("new-skill", "missing"), author="a", base_version="abc"
        )


def test_store_policy_can_apply_skill_edits(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store.init(root).close()
    (root / "somna.toml").write_text('[policy]\n"skills/**" = "apply"\n', encoding="utf-8")
    store = Store(root)
    text = GOOD.format(name="quick", desc="Applied at once.").replace(
        " Details in [the guide](references/guide.md).", ""
    )
    out = skill_store.propose(store, "quick", text, author="cursor")
    assert out["status"] == "applied" and out["commit"]
    assert git_log(root)[0] == "cursor|create skill:quick"
    store.close()


def test_install_shipped_skills(store: Store) -> None:
    first = skill_store.install(store)
    assert "using-somna-memory" in first["installed"] and first["commit"]
    assert git_log(store.root)[0].startswith("somna|install skills: ")
    assert skill_store.install(store)["unchanged"] == first["installed"]
    md = store.root / "skills" / "using-somna-memory" / "SKILL.md"
    md.write_text(md.read_text(encoding="utf-8") + "\nlocal note\n", encoding="utf-8")
    assert skill_store.install(store)["skipped"] == ["using-somna-memory"]
    assert skill_store.install(store, force=True)["updated"] == ["using-somna-memory"]
    assert "local note" not in md.read_text(encoding="utf-8")
    assert not subprocess.run(
        ["git", "status", "--porcelain"], cwd=store.root, capture_output=True, text=True
    ).stdout
    assert not [p for s in check_paths([store.root / "skills"]) for p in s.problems]


def test_shipped_skills_pass_check() -> None:
    res = somna("skills", "check", str(REPO / "skills"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 invalid, 0 problems" in res.stdout
    names = {p.name for p in (REPO / "skills").iterdir() if p.is_dir()}
    assert "using-somna-memory" in names
    body = (REPO / "skills" / "using-somna-memory" / "SKILL.md").read_text(encoding="utf-8").lower()
    for topic in ("search before you act", "write what is worth keeping", "feedback", "reflect"):
        assert topic in body


def test_cli_check_list_install_and_accept(tmp_path: Path) -> None:
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    assert somna("--store", str(store), "skills", "install").returncode == 0
    malformed(store / "skills")
    res = somna("--store", str(store), "skills", "check")
    assert res.returncode == 1
    assert (
        f"{store / 'skills' / 'bad-yaml' / 'SKILL.md'}:3: error: front matter is not valid YAML" in res.stdout
    )
    assert "12 skills checked: 2 valid, 10 invalid" in res.stdout
    listed = somna("--store", str(store), "skills", "list").stdout
    assert "using-somna-memory  [store]" in listed and "mismatch  [store]  INVALID" in listed
    text = GOOD.format(name="from-cli", desc="Proposed, then accepted by a person.").replace(
        " Details in [the guide](references/guide.md).", ""
    )
    s = Store(store)
    pid = skill_store.propose(s, "from-cli", text, author="codex")["proposal"]
    s.close()
    assert pid in somna("--store", str(store), "proposals").stdout
    res = somna("--store", str(store), "proposals", "accept", pid)
    assert res.returncode == 0 and "skill:from-cli is now version" in res.stdout, res.stderr
    assert (store / "skills" / "from-cli" / "SKILL.md").exists()
