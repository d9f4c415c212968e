"""Portability: learned context exported within a budget; whole stores bundled and imported with history."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import somna

from somna import history
from somna.embeddings import HashEmbedder
from somna.portable import FORMATS, render
from somna.store import Store

TOPICS = ["kafka", "redis", "nginx", "postgres", "celery", "grafana", "vault", "consul", "envoy", "minio"]


def filled_store(root: Path) -> tuple[Store, dict[str, str]]:
    """A store with blocks, memories of every kind, feedback, an archived and a harmful memory, a skill."""
    store = Store.init(root, embedder=HashEmbedder())
    ids: dict[str, str] = {}
    block = store.read("block:user")
    store.edit(
        "block:user",
        "replace",
        block["version"],
        author="human",
        text="Prefers uv to pip. Wants small commits with a why in the message.",
    )
    for i, topic in enumerate(TOPICS * 3):
        kind = ("fact", "lesson", "decision", "preference", "procedure", "note")[i % 6]
        out = store.write(
            f"{topic} #{i}: on deploy, run `make {topic}-{i}` and check port {9000 + i}. "
            + "Details follow. " * (i % 4) * 20,
            title=f"{topic} note {i}",
            type=kind,
            tags=[topic],
            author="tester",
            force=True,
        )
        ids[f"{kind}-{i}"] = out["id"]
    archived = store.write(
        "An old way of deploying nginx that no longer applies.", type="lesson", author="tester", force=True
    )["id"]
    store.edit(archived, "archive", store.read(archived)["version"], author="tester")
    ids["archived"] = archived
    bad = store.write(
        "Restart the database by deleting its data folder.", type="lesson", author="tester", force=True
    )["id"]
    store.feedback([bad, bad], "harmful", author="tester")
    ids["harmful"] = bad
    store.feedback([ids["fact-0"]] * 3, "helpful", author="tester")
    skill = root / "skills" / "deploy-check"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(
        "---\nname: deploy-check\ndescription: Check a deploy end to end.\n---\n"
        "Run the smoke tests, then watch the error rate for five minutes.\n",
        encoding="utf-8",
    )
    store.sync()
    return store, ids


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("budget", [1_500, 4_000, 30_000])
def test_the_export_stays_within_its_budget_and_ranks_what_matters_first(
    tmp_path: Path, fmt: str, budget: int
) -> None:
    store, ids = filled_store(tmp_path / "s")
    try:
        out = render([store], fmt, budget, today="2026-01-02")
    finally:
        store.close()

    assert len(out.text) <= budget
    assert "Prefers uv to pip" in out.text  # the core block comes first
    assert ids["archived"] not in out.text and ids["harmful"] not in out.text
    assert out.harmful == 1 and out.total == 31 and out.shown + out.left_out == 30
    if out.left_out:
        assert f"{out.left_out:,} more memories did not fit" in out.text and "`search`" in out.text
    shown = [line for line in out.text.splitlines() if line.startswith("_") and "`" in line]
    kinds = [line.split(" · ")[0].strip("_") for line in shown]
    first = [k in ("lesson", "decision", "preference") for k in kinds]
    assert first == sorted(first, reverse=True), kinds  # lessons, decisions, preferences before the rest
    if fmt == "cursor-rules":
        assert out.text.startswith("---\ndescription: ") and "\nalwaysApply: true\n---\n" in out.text
    if budget == 30_000:
        assert out.left_out == 0 and ids["fact-0"] in out.text
        facts = [line for line in shown if line.startswith("_fact")]
        assert ids["fact-0"] in facts[0]  # helpful feedback puts it first among the facts


def test_somna_export_writes_the_file_and_refuses_a_budget_too_small(tmp_path: Path, somna_env: Path) -> None:
    filled_store(somna_env)[0].close()

    done = somna("export", "--format", "agents-md", "--budget", "3000", "-o", str(tmp_path / "AGENTS.md"))

    assert done.returncode == 0, done.stderr
    text = (tmp_path / "AGENTS.md").read_text(encoding="utf-8")
    assert len(text) <= 3000 and text.startswith("# What earlier sessions learned")
    assert "did not fit" in done.stderr
    stdout = somna("export", "--format", "claude-md", "--budget", "2500")
    assert stdout.returncode == 0 and len(stdout.stdout) <= 2500
    small = somna("export", "--format", "claude-md", "--budget", "100")
    assert small.returncode == 1 and "too small" in small.stderr


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for sub in ("memory", "blocks", "skills", "proposals")
        for p in sorted((root / sub).rglob("*"))
        if p.is_file()
    }


def test_bundle_and_import_round_trip_the_store_with_its_history(tmp_path: Path) -> None:
    source = tmp_path / "laptop"
    store, ids = filled_store(source)
    mid = ids["lesson-1"]
    store.edit(mid, "append", store.read(mid)["version"], author="claude-code", text="Also: clear the cache.")
    store.close()
    (source / "memory" / f"{ids['fact-0']}.md").write_text(
        (source / "memory" / f"{ids['fact-0']}.md").read_text(encoding="utf-8") + "Edited by hand.\n",
        encoding="utf-8",
    )  # not committed yet: export commits it first
    bundle = tmp_path / "moving" / "laptop.bundle"

    out = somna("--store", str(source), "export", "--bundle", str(bundle), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["commits"] >= 30
    dest = tmp_path / "desktop" / "store"
    done = somna("import", str(bundle), str(dest))

    assert done.returncode == 0, done.stderr
    log = ["log", "--all", "--format=%H %an %ae %at %s"]
    assert history.git(dest, *log) == history.git(source, *log)
    assert "human edit picked up by somna" in history.git(dest, "log", "-3", "--format=%s")
    assert files(dest) == files(source)
    assert history.git(dest, "remote").strip() == ""
    assert history.git(dest, "status", "--porcelain").strip() == ""
    doctor = somna("--store", str(dest), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    found = somna("--store", str(dest), "search", "redis", "port", "--json", "--words")
    assert any(h["id"].startswith("redis") for h in json.loads(found.stdout)["hits"])
    assert "Also: clear the cache." in somna("--store", str(dest), "show", mid).stdout
    skills = somna("--store", str(dest), "skills", "list", "--json")
    assert "deploy-check" in skills.stdout


def test_import_refuses_a_folder_in_use_and_a_file_that_is_no_bundle(tmp_path: Path, somna_env: Path) -> None:
    store, _ = filled_store(tmp_path / "s")
    store.close()
    bundle = tmp_path / "s.bundle"
    assert somna("--store", str(tmp_path / "s"), "export", "--bundle", str(bundle)).returncode == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine", encoding="utf-8")

    refused = somna("import", str(bundle), str(busy))
    assert refused.returncode == 1 and "not empty" in refused.stderr
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]

    junk = tmp_path / "junk.bundle"
    junk.write_text("not a bundle", encoding="utf-8")
    failed = somna("import", str(junk), str(tmp_path / "new"))
    assert failed.returncode == 1 and not (tmp_path / "new").exists()

    assert somna("import", str(bundle)).returncode == 0  # no PATH: the user store ($SOMNA_HOME)
    assert (somna_env / "skills" / "deploy-check" / "SKILL.md").is_file()


def test_long_operations_show_progress_on_a_terminal_and_only_there(tmp_path: Path) -> None:
    """reindex (like import, export) reports progress on stderr when it is a terminal; never on stdout."""
    store, _ = filled_store(tmp_path / "s")
    store.close()
    (tmp_path / "s" / ".somna" / "index.db").unlink()
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "somna", "--store", str(tmp_path / "s"), "reindex"],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
        )
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"indexing the store store: notes embedded" in seen and b"\r" in seen
    assert b"\r" not in done.stdout and b"embedded" not in done.stdout
    piped = somna("--store", str(tmp_path / "s"), "reindex", "--full")
    assert piped.returncode == 0 and "embedded" not in piped.stderr and "\r" not in piped.stdout
