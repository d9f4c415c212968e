"""`somna sync`: two machines (two stores) and a remote (a bare repository under tmp_path), real git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import git, somna

from somna import doctor, gitsync, history
from somna.app import open_store
from somna.embeddings import HashEmbedder
from somna.store import Store
from somna.sync import sync_store


def bare(tmp_path: Path, name: str = "remote.git") -> Path:
    remote = tmp_path / name
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    return remote


def machine(tmp_path: Path, name: str, remote: Path) -> Store:
    store = open_store(tmp_path / name, embedder=HashEmbedder(), create=True)
    gitsync.configure(store.root, str(remote))
    return store


@pytest.fixture
def two(tmp_path: Path):  # type: ignore[no-untyped-def]
    remote = bare(tmp_path)
    a, b = machine(tmp_path, "a", remote), machine(tmp_path, "b", remote)
    yield a, b
    a.close()
    b.close()


def ids(store: Store) -> set[str]:
    return {row.id for row in store.index.all_rows("memory")}


def test_a_memory_written_on_a_is_found_on_b(two: tuple[Store, Store]) -> None:
    a, b = two
    wrote = a.write(
        "Integration tests use the staging database on port 5433.", title="staging port", author="t"
    )
    assert sync_store(a)["status"] == "synced"
    result = sync_store(b)
    assert result["status"] == "synced" and result["received"]
    hits = b.search("staging database port")["hits"]
    assert hits and hits[0]["id"] == wrote["id"]
    assert sync_store(a)["status"] in ("synced", "up to date")
    assert ids(a) == ids(b) == {wrote["id"]}
    assert doctor.check(a)["ok"] and doctor.check(b)["ok"]


def test_the_same_memory_edited_on_both_keeps_both(two: tuple[Store, Store]) -> None:
    a, b = two
    wrote = a.write("Deploys go out on Tuesdays after the standup.", title="deploy day", author="t")
    sync_store(a), sync_store(b)
    mid = wrote["id"]
    a.edit(mid, "replace", a.read(mid)["version"], text="Deploys go out on Wednesdays (A).", author="alice")
    b.edit(mid, "replace", b.read(mid)["version"], text="Deploys go out on Thursdays (B).", author="bob")
    assert sync_store(a)["pushed"]
    result = sync_store(b)
    assert result["status"] == "synced" and result["pushed"] and len(result["proposals"]) == 1
    sync_store(a)
    for store in (a, b):
        applied = store.read(mid)["content"]
        queued = [p for p in store.proposals() if p["target"] == mid]
        assert len(queued) == 1 and "sync conflict" in (queued[0]["reason"] or "")
        other = "Thursdays (B)" if "Wednesdays (A)" in applied else "Wednesdays (A)"
        assert other in queued[0]["diff"]
        log = git(store.root, "log", "-p", "--all", "--full-history", "--", f"memory/{mid}.md")
        assert "Wednesdays (A)" in log and "Thursdays (B)" in log  # both versions stay in history
    # accepting the queued version applies it
    b.accept(result["proposals"][0], author="bob")
    assert other in b.read(mid)["content"]


def test_archive_on_one_side_and_edit_on_the_other_keeps_the_edit_visible(two: tuple[Store, Store]) -> None:
    a, b = two
    mid = a.write("The cache is warmed by the nightly job at 02:00.", title="cache warmup", author="t")["id"]
    sync_store(a), sync_store(b)
    a.edit(mid, "archive", a.read(mid)["version"], author="alice")
    b.edit(mid, "append", b.read(mid)["version"], text="It also runs after each deploy.", author="bob")
    sync_store(a)
    result = sync_store(b)
    read = b.read(mid)
    assert read["meta"].get("status", "active") == "active"
    assert "after each deploy" in read["content"]
    assert [p["op"] for p in b.proposals() if p["target"] == mid] == ["archive"]
    assert result["proposals"]


def test_counters_add_up_and_blocks_merge_without_truncation(two: tuple[Store, Store]) -> None:
    a, b = two
    mid = a.write("Run the linter before pushing.", title="lint first", author="t")["id"]
    sync_store(a), sync_store(b)
    for store, helpful, line in ((a, 3, "Prefers tabs."), (b, 2, "Works in UTC.")):
        path = store.root / f"memory/{mid}.md"
        path.write_text(path.read_text().replace("---\nRun", f"helpful: {helpful}\n---\nRun"))
        block = store.root / "blocks/user.md"
        block.write_text(block.read_text() + ("\n" if line.startswith("Prefers") else "\n\n\n") + line + "\n")
        store.sync()
    sync_store(a)
    sync_store(b)
    sync_store(a)
    for store in (a, b):
        assert store.read(mid)["meta"]["helpful"] == 5
        block = store.read("block:user")["content"]
        assert "Prefers tabs." in block and "Works in UTC." in block


def test_the_same_new_file_on_both_sides_keeps_both(two: tuple[Store, Store]) -> None:
    a, b = two
    (a.root / "memory/notes.md").write_text("# Notes\nA: the CI cache key includes the lockfile hash.\n")
    (b.root / "memory/notes.md").write_text("# Notes\nB: flaky tests are retried once in CI.\n")
    a.sync(), b.sync()
    sync_store(a)
    sync_store(b)
    sync_store(a)
    for store in (a, b):
        texts = [p.read_text() for p in (store.root / "memory").glob("*.md")]
        assert any("lockfile hash" in t for t in texts) and any("retried once" in t for t in texts)
        assert len(ids(store)) == 2


def test_notes_with_one_file_name_in_two_folders_both_count(store: Store) -> None:
    for sub, text in (("a", "Alpha: use pnpm."), ("b", "Beta: use poetry.")):
        (store.root / "memory" / sub).mkdir()
        (store.root / "memory" / sub / "x.md").write_text(f"# {text}\n{text}\n")
    (store.root / "memory/x.md").write_text("# Top\nTop-level x.\n")
    store.sync()
    rows = {row.id: row.path for row in store.index.all_rows("memory")}
    assert rows == {"x": "memory/x.md", "a-x": "memory/a/x.md", "b-x": "memory/b/x.md"}
    assert not store.indexer.problems()
    store.edit("b-x", "append", store.read("b-x")["version"], text="And poetry lock.", author="t")
    store.sync()
    assert {row.id for row in store.index.all_rows("memory")} == {"x", "a-x", "b-x"}


def test_a_secret_in_a_hand_written_note_blocks_the_push(two: tuple[Store, Store], tmp_path: Path) -> None:
    a, _ = two
    note = a.root / "memory/staging.md"
    note.write_text("# Staging\nstaging creds with secret Qm8vT2xZrW4pLk9sN3bY7hJd5fGc1aXe6uVi0oPq\n")
    result = sync_store(a)
    assert result["status"] == "blocked" and not result["pushed"]
    assert "memory/staging.md" in result["message"]
    assert "Qm8vT2" not in git(tmp_path / "remote.git", "log", "-p", "--all")
    # the command says so too, and exits 1
    proc = somna("--store", str(a.root), "sync")
    assert proc.returncode == 1 and "memory/staging.md" in proc.stderr
    # removed from the file, the earlier version is still in a local commit: --squash sends the files as now
    note.write_text("# Staging\nstaging creds are in the team vault.\n")
    assert sync_store(a)["status"] == "blocked"
    assert sync_store(a, squash=True)["status"] == "synced"
    assert "Qm8vT2" not in git(tmp_path / "remote.git", "log", "-p", "--all")


def test_an_offline_remote_is_a_clear_message_and_work_goes_on(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    a = machine(tmp_path, "a", remote)
    try:
        sync_store(a)
        remote.rename(tmp_path / "moved.git")
        a.write("The VPN drops idle SSH sessions after 15 minutes.", title="vpn idle", author="t")
        result = sync_store(a)
        assert result["status"] == "offline" and "cannot reach" in result["message"]
        assert a.search("VPN idle SSH")["hits"]
        (tmp_path / "moved.git").rename(remote)
        assert sync_store(a)["pushed"]
    finally:
        a.close()


def test_a_store_is_pushed_only_to_its_configured_remote(two: tuple[Store, Store], tmp_path: Path) -> None:
    a, _ = two
    other = bare(tmp_path, "elsewhere.git")
    history.git(a.root, "remote", "set-url", "origin", str(other))
    result = sync_store(a)
    assert result["status"] == "refused" and "configured to sync with" in result["message"]
    proc = somna("--store", str(a.root), "sync")
    assert proc.returncode == 1 and "configured to sync with" in proc.stderr
    assert git(other, "for-each-ref") == ""


def test_a_url_with_a_password_is_never_recorded(store: Store) -> None:
    with pytest.raises(Exception, match="never stores a credential"):
        gitsync.configure(store.root, "https://bob:hunter2xyz@git.example.test/team/memory.git")
    assert "hunter2" not in (history.common_dir(store.root) / "config").read_text()


def test_the_index_and_state_never_leave_the_machine(two: tuple[Store, Store], tmp_path: Path) -> None:
    a, _ = two
    a.write("Use ruff format, not black.", title="formatter", author="t")
    sync_store(a)
    files = git(tmp_path / "remote.git", "ls-tree", "-r", "--name-only", "main").split()
    assert files and not any(f.startswith((".somna/", "inbox/")) for f in files)


def test_a_teammates_malformed_note_and_a_huge_binary_are_quarantined(two: tuple[Store, Store]) -> None:
    a, b = two
    (a.root / "memory/broken.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    (a.root / "memory/blob.md").write_bytes(b"\x00\x01" * 700_000)
    history.commit(a.root, ["memory/broken.md", "memory/blob.md"], "teammate's files", "teammate")
    a.write("Good note survives a bad neighbour.", title="good note", author="t")
    assert sync_store(a)["pushed"]
    result = sync_store(b)
    assert result["status"] == "synced"
    assert b.search("good note neighbour")["hits"]
    assert {"memory/broken.md", "memory/blob.md"} <= b.indexer.problems()


def test_a_sync_killed_while_it_moved_the_files_is_finished_when_the_store_opens(
    two: tuple[Store, Store], tmp_path: Path
) -> None:
    a, b = two
    a.write("Feature flags are read from flags.yaml at start-up.", title="flags", author="t")
    sync_store(a)
    b.write("Logs go to journald, not files.", title="logs", author="t")
    theirs = gitsync.fetch(b.root, gitsync.remote_of(b.root))  # type: ignore[arg-type]
    assert theirs is not None
    tree, conflicts = gitsync.merge_tree(b.root, history.head(b.root) or "", theirs)
    assert not conflicts
    target = gitsync.build_commit(b.root, tree, {}, [history.head(b.root) or "", theirs], "merge", "t")
    # the state a kill -9 inside `git merge --ff-only` leaves: the marker, files and index moved, HEAD not
    (b.layout.somna / gitsync.TARGET).write_text(target + "\n")
    history.git(b.root, "read-tree", "-m", "-u", "HEAD", target)
    assert not doctor.check(b)["consistent"]
    b.close()
    reopened = open_store(tmp_path / "b", embedder=HashEmbedder())
    try:
        reopened.sync()
        assert history.head(reopened.root) == target
        assert doctor.check(reopened)["consistent"]
        assert {"flags", "logs"} <= {r.title for r in reopened.index.all_rows("memory")}
        assert sync_store(reopened)["pushed"]
    finally:
        reopened.close()


def test_a_remote_that_refuses_the_push_is_a_clear_message_and_loses_nothing(
    two: tuple[Store, Store], tmp_path: Path
) -> None:
    a, _ = two
    sync_store(a)
    hook = tmp_path / "remote.git/hooks/pre-receive"
    hook.write_text("#!/bin/sh\necho 'permission denied: read-only mirror' >&2\nexit 1\n")
    hook.chmod(0o755)
    mid = a.write("The mirror is read-only on Fridays.", title="mirror", author="t")["id"]
    result = sync_store(a)
    assert result["status"] == "rejected" and not result["pushed"]
    assert "refused the push" in result["message"] and "read-only mirror" in result["message"]
    proc = somna("--store", str(a.root), "sync")
    assert proc.returncode == 1 and "refused the push" in proc.stderr
    assert a.read(mid)["content"].startswith("The mirror")
    assert doctor.check(a)["consistent"]
    hook.unlink()
    assert sync_store(a)["pushed"]


def test_a_project_store_given_another_remote_leaves_the_projects_origin_alone(tmp_path: Path) -> None:
    from somna import project

    origin, other = bare(tmp_path, "code.git"), bare(tmp_path, "memory.git")
    app = tmp_path / "app"
    subprocess.run(["git", "init", "-q", "-b", "main", str(app)], check=True)
    history.git(app, "remote", "add", "origin", str(origin))
    root, done = project.setup(app)
    assert done == "created store at" and gitsync.remote_of(root) == gitsync.Remote(
        "origin", project.BRANCH, str(origin)
    )
    gitsync.configure(root, str(other), name="origin", branch=project.BRANCH)
    assert git(app, "remote", "get-url", "origin").strip() == str(origin)
    assert gitsync.remote_of(root) == gitsync.Remote("somna", project.BRANCH, str(other))
    store = open_store(root, embedder=HashEmbedder(), scope="project")
    try:
        assert sync_store(store)["pushed"]
    finally:
        store.close()
    assert git(other, "branch", "--list").split() == [project.BRANCH]
    assert git(origin, "branch", "--list") == ""


def test_the_daemon_syncs_a_store_that_has_a_remote_by_itself(
    two: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background daemon syncs as it starts and every SOMNA_SYNC_EVERY seconds: a memory written on A
    while A's daemon runs reaches the remote, and B's next sync finds it; no command was typed on A."""
    import threading
    import time

    from somna.daemon import Daemon

    a, b = two
    monkeypatch.setenv("SOMNA_SYNC_EVERY", "1")
    daemon = Daemon(a, idle=3600)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert daemon.watching.wait(30)
        wrote = a.write("The nightly export runs at 02:30 UTC from cron on ops-1.", author="t")
        deadline = time.monotonic() + 30
        while not (sync_store(b)["received"] and wrote["id"] in ids(b)):
            assert time.monotonic() < deadline, "A's daemon never pushed the memory"
            time.sleep(0.5)
        assert b.search("nightly export cron")["hits"][0]["id"] == wrote["id"]
    finally:
        daemon.stop_event.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_a_store_without_a_remote_is_never_synced_by_the_schedule(tmp_path: Path) -> None:
    from somna.sync import Schedule

    store = open_store(tmp_path / "alone", embedder=HashEmbedder(), create=True)
    schedule = Schedule(store, every=0.01)
    assert schedule.tick() is None and schedule.last is not None  # looked, found no remote, did nothing
    assert Schedule(store, every=0).now() is None
    store.close()
