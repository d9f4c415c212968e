"""Group commit (the server's writes): on disk and indexed at once, committed in groups with the right
author, and nothing lost or misattributed when the process dies before its commit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import git_changes, somna

from somna.embeddings import HashEmbedder
from somna.store import Store

WRITER = """
import json, os, sys
from somna.embeddings import HashEmbedder
from somna.store import Store
s = Store(sys.argv[1], embedder=HashEmbedder())
s.sync()  # as the server does when it starts
old = s.write("The health endpoint is /healthz on port 8081.", author="agent-y")  # committed at once
s.group_commits(window=3600)  # never on its own: the commits are still pending when the process dies
ids = [s.write(f"Deploy step {i}: run migration {i} before restarting worker {i}.", author="agent-x",
               force=True)["id"] for i in range(3)]
edited = s.edit(old["id"], "append", old["version"], text="It answers 503 while draining.", author="agent-y")
print(json.dumps({"ids": ids, "old": old["id"], "edit": edited}), flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_killed_writer_leaves_its_commits_to_the_next_process_with_the_right_authors(
    tmp_path: Path,
) -> None:
    root = tmp_path / "s"
    Store.init(root, embedder=HashEmbedder()).close()
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, str(root)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr
    out = json.loads(proc.stdout)
    ids = out["ids"]
    assert out["edit"]["status"] == "applied" and out["edit"]["commit"] is None  # pending, not made
    for i in ids:
        assert (root / "memory" / f"{i}.md").is_file()
    assert "agent-x" not in git_changes(root) and f"agent-y|append {out['old']}" not in git_changes(root)

    # doctor sees pending commits, not stray edits, and reports the store consistent
    report = json.loads(somna("--store", str(root), "doctor", "--json").stdout)[0]
    assert report["consistent"] and not report["uncommitted"], report
    assert report["pending_commits"] == sorted(f"memory/{i}.md" for i in [*ids, out["old"]])
    human = somna("--store", str(root), "doctor").stdout
    assert "pending    4 changes wait for their commit" in human and "NOT consistent" not in human, human

    # the next process to sync (here `somna search`) commits them as their authors: not as `human`
    assert somna("--store", str(root), "search", "deploy migration").returncode == 0
    log = git_changes(root)
    for i in ids:
        assert f"agent-x|write {i}:" in log, log
    assert f"agent-y|append {out['old']}" in log and "human|" not in log, log
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    assert status == ""
    again = Store(root, embedder=HashEmbedder())
    assert again.pending_commits() == []
    versions = again.history(out["old"])["versions"]
    assert [v["author"] for v in versions] == ["agent-y", "agent-y"]
    again.close()


def test_writes_close_together_make_one_commit_per_author_within_the_window(tmp_path: Path) -> None:
    s = Store.init(tmp_path / "s", embedder=HashEmbedder())
    before = int(
        subprocess.run(
            ["git", "rev-list", "--count", "HEAD"], cwd=s.root, capture_output=True, text=True
        ).stdout
    )
    s.group_commits(window=0.3)
    a = [
        s.write(
            f"Cache key {i} expires after {i * 10} minutes in region eu-{i}.", author="agent-a", force=True
        )["id"]
        for i in range(4)
    ]
    b = s.write("The nightly export writes to s3://exports/nightly.", author="agent-b")["id"]
    assert all(s.read(i)["content"] for i in [*a, b])  # readable and searchable before any commit
    assert s.search("nightly export")["hits"][0]["id"] == b
    deadline = time.monotonic() + 10
    while s.pending_commits() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.pending_commits() == []
    log = git_changes(s.root)
    count = int(
        subprocess.run(
            ["git", "rev-list", "--count", "HEAD"], cwd=s.root, capture_output=True, text=True
        ).stdout
    )
    assert count - before == 2, log  # one for agent-a's four writes, one for agent-b's
    assert all(f"agent-a|write {i}:" in log for i in a) and f"agent-b|write {b}:" in log
    # history and revert see a write at once: they commit what is pending first
    c = s.write("The staging cluster has 3 nodes.", author="agent-a")
    s.edit(c["id"], "str_replace", c["version"], old="3 nodes", new="5 nodes", author="agent-a")
    versions = s.history(c["id"])["versions"]  # the edit committed the write first: both versions kept
    assert len(versions) == 2 and s.pending_commits() == []
    assert s.revert(c["id"], author="agent-a")["status"] == "reverted"
    assert "3 nodes" in s.read(c["id"])["content"]
    s.close()
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=s.root, capture_output=True, text=True
    ).stdout
    assert status == ""


def test_a_file_deleted_by_hand_before_its_commit_does_not_wedge_the_journal(tmp_path: Path) -> None:
    s = Store.init(tmp_path / "s", embedder=HashEmbedder())
    s.group_commits(window=3600)
    kept = s.write("The worker pool has 8 threads.", author="agent-a")["id"]
    dropped = s.write("Temporary: the staging DNS is flaky today.", author="agent-a")["id"]
    changed = s.write("The release train leaves on Thursdays.", author="agent-b")["id"]
    (s.root / "memory" / f"{dropped}.md").unlink()  # a person removes it before the commit is made
    assert s.flush_commits() == 2
    log = git_changes(s.root)
    assert f"agent-a|write {kept}:" in log and f"agent-b|write {changed}:" in log
    assert dropped not in log  # the message names only what the commit holds
    in_git = subprocess.run(
        ["git", "log", "--format=%H", "--", f"memory/{dropped}.md"],
        cwd=s.root,
        capture_output=True,
        text=True,
    ).stdout
    assert in_git == ""  # never committed: it was gone before its commit
    assert s.pending_commits() == []
    s.sync()  # the index forgets the deleted file; nothing is left to commit
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=s.root, capture_output=True, text=True
    ).stdout
    assert status == ""
    s.close()
