"""`somna sync` under load and under kill -9: two machines, a bare repository as the remote, real processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_sync import bare, machine  # the two machines and their remote, as the fast tests make them

from somna import doctor, gitsync, history
from somna.app import open_store
from somna.embeddings import HashEmbedder
from somna.store import Store
from somna.sync import sync_store

pytestmark = pytest.mark.slow


def memory_ids(store: Store) -> set[str]:
    store.sync()
    return {row.id for row in store.index.all_rows("memory")}


def test_200_writes_on_each_side_synced_every_few_seconds_for_a_minute(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    stores = {"a": machine(tmp_path, "a", remote), "b": machine(tmp_path, "b", remote)}
    written: dict[str, list[str]] = {"a": [], "b": []}
    syncs: dict[str, list[float]] = {"a": [], "b": []}
    statuses: list[str] = []
    start = time.monotonic()
    duration, per_side = 60.0, 200

    def writer(name: str) -> None:
        store = stores[name]
        for i in range(per_side):
            wrote = store.write(
                f"Machine {name} learned fact {i}: service-{name}-{i} listens on port {10000 + i}.",
                title=f"{name} fact {i}",
                author=f"agent-{name}",
                force=True,
            )
            written[name].append(wrote["id"])
            if i % 10 == 0 and i:  # now and then an edit of an older memory of its own
                old = written[name][i // 2]
                store.edit(
                    old, "append", store.read(old)["version"], text=f"Checked again ({i}).", author="t"
                )
            time.sleep(max(0.0, (start + duration * (i + 1) / per_side) - time.monotonic()))

    def syncer(name: str) -> None:
        while time.monotonic() - start < duration + 1:
            t0 = time.monotonic()
            result = sync_store(stores[name])
            statuses.append(
                result["status"] + (f": {result['message']}" if result["status"] == "rejected" else "")
            )
            syncs[name].append(time.monotonic() - t0)
            time.sleep(random.uniform(2.0, 4.0))

    threads = [threading.Thread(target=f, args=(n,)) for f in (writer, syncer) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(2):  # the last writes of each side go out and come in
        for name in ("a", "b"):
            statuses.append(sync_store(stores[name])["status"])
    try:
        expected = set(written["a"]) | set(written["b"])
        assert len(expected) == 2 * per_side
        for name, store in stores.items():
            assert memory_ids(store) == expected, name
            report = doctor.check(store)
            assert report["ok"] and report["consistent"], report
        assert set(statuses) <= {"synced", "up to date"}, statuses
        print(
            f"\n{len(syncs['a']) + len(syncs['b'])} syncs during the minute, "
            f"median {sorted(syncs['a'] + syncs['b'])[len(syncs['a'] + syncs['b']) // 2]:.2f} s, "
            f"max {max(syncs['a'] + syncs['b']):.2f} s; {len(expected)} memories on both sides"
        )
    finally:
        for store in stores.values():
            store.close()


def test_kill_9_during_a_sync_at_20_moments(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    a, b = machine(tmp_path, "a", remote), machine(tmp_path, "b", remote)
    shared = a.write("The release checklist lives in docs/release.md.", title="release checklist", author="t")
    sync_store(a), sync_store(b)
    rng = random.Random(17)
    expected = {shared["id"]}
    env = {**os.environ, "SOMNA_EMBEDDER": "hash"}
    took: list[float] = []
    moments = dict.fromkeys(
        ("before the merge", "inside another git command", "while moving the files", "after the merge"), 0
    )
    for round_ in range(20):
        # each round: both sides write and edit the same memory, so b's sync has a conflict to merge
        for store, who in ((a, "alice"), (b, "bob")):
            expected.add(
                store.write(f"{who} round {round_}: note {rng.random()}", author=who, force=True)["id"]
            )
            sid = shared["id"]
            store.edit(
                sid, "append", store.read(sid)["version"], text=f"{who} was here in {round_}.", author=who
            )
        assert sync_store(a)["pushed"]
        b.close()
        cmd = [sys.executable, "-m", "somna", "--store", str(b.root), "sync"]
        if not took:  # the first round measures how long a whole sync takes, then kills are spread over it
            t0 = time.monotonic()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            took.append(time.monotonic() - t0)
            assert done.returncode == 0, done.stderr
        else:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.2, took[0]))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            root = tmp_path / "b"
            if gitsync.interrupted(root / ".somna"):
                moments["while moving the files"] += 1
            elif history.interrupted(root):
                moments["inside another git command"] += 1
            elif gitsync.is_ancestor(root, history.head(a.root) or "", history.head(root) or ""):
                moments["after the merge"] += 1
            else:
                moments["before the merge"] += 1
        b = open_store(tmp_path / "b", embedder=HashEmbedder())
        b.sync()  # opening the store: it is consistent again (a killed sync finished or not begun)
        report = doctor.check(b)
        assert report["consistent"], (round_, report)
        result = sync_store(b)  # and the next sync completes
        assert result["status"] in ("synced", "up to date"), (round_, result)
    sync_store(a)
    try:
        for store in (a, b):
            assert memory_ids(store) >= expected
            assert doctor.check(store)["ok"]
        text = b.read(shared["id"])["content"] + "".join(p["diff"] for p in b.proposals())
        assert "bob was here in 19." in text and "alice was here in 19." in text
        print(f"\na whole sync took {took[0]:.2f} s; 19 kills landed: {moments}")
    finally:
        a.close()
        b.close()
