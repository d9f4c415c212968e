"""kill -9 a writer at random points, N times; after each, the store must open and heal. Writes
bench/results/crash.{md,json}.

    python bench/crash.py [--iterations 50] [--seed 7] [--store DIR]

Each iteration starts one real writer process on one store and kills it with SIGKILL after a random
delay (0.05–1.5 s after it is ready, so kills land inside file writes, git commits, index updates and
sleep cycles alike). Writers, in turn:

- ``core``:  the library in a loop — write, edit (append / str_replace), revert, feedback, hand edit + sync;
- ``cli``:   `somna add` (the whole CLI process is the victim, start-up included);
- ``sleep``: near-duplicates written with force, then a sleep-time cycle (`Cycle.run`), in a loop.
- ``mcp``:   an agent drives a real `somna serve` over stdio (writes, read + append); the server is killed;
- ``daemon``: `somna daemon --idle 1` while a person keeps writing files by hand and a transcript waits in
  the inbox: killed while it commits hand edits or runs a sleep cycle.

A writer prints a line for every operation it has finished ("ack"). After each kill:

1. the store opens (`Store(root)`), and every note on disk parses: no torn file;
2. `somna doctor --json` says what the kill left behind — the state is classified as clean, a temp file
   of an interrupted write, a git lock / an interrupted git command, uncommitted files, index drift;
3. `somna doctor --repair --json` must leave it consistent and ok: no temp file, no git lock, nothing
   uncommitted, the index equal to the files, git sound (fsck);
4. every write acknowledged so far (all iterations) is on disk, in HEAD and in the index.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WRITERS = ("core", "cli", "sleep", "mcp", "daemon")
ENV = {**os.environ, "SOMNA_EMBEDDER": "hash", "SOMNA_ATTACH": "0", "SOMNA_LOG_LEVEL": "ERROR"}


# -- the writer (a separate process) ------------------------------------------------------------------
def worker(store_path: str, kind: str, seed: int) -> None:
    """Loop forever doing real writes; print an ack line after each one finished. Killed from outside."""
    from somna.embeddings import HashEmbedder
    from somna.errors import SomnaError
    from somna.sleep.cycle import Cycle
    from somna.store import Store

    rng = random.Random(seed)
    store = Store(Path(store_path), embedder=HashEmbedder())
    store.sync()
    mine: list[tuple[str, str]] = []

    def ack(**kw: Any) -> None:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    if kind == "mcp":
        mcp_worker(store_path, rng, ack)
        return
    ack(ready=True)
    n = 0
    while True:
        n += 1
        word = f"{seed}x{n}"
        try:
            if kind == "sleep":
                base = rng.choice(
                    [
                        "Retry on 429 after backing off two seconds",
                        "Run the linter with ruff check before each commit",
                    ]
                )
                for i in range(3):
                    out = store.write(f"{base}, note {word}-{i}.", author="claude-code", force=True)
                    ack(op="write", id=out["id"], version=out["version"])
                Cycle(store).run()
                ack(op="cycle")
                continue
            choice = rng.random()
            if choice < 0.45 or len(mine) < 3:
                out = store.write(
                    f"Fact {word}: service {rng.randrange(10**6)} listens on port "
                    f"{rng.randrange(1024, 65535)} behind proxy {word}.",
                    author="claude-code",
                )
                mine.append((out["id"], out["version"]))
                ack(op="write", id=out["id"], version=out["version"])
            elif choice < 0.7:
                i = rng.randrange(len(mine))
                mid, ver = mine[i]
                out = store.edit(mid, "append", ver, author="cursor", text=f"Also {word}.")
                mine[i] = (mid, out["version"])
                ack(op="edit", id=mid, version=out["version"])
            elif choice < 0.8:
                i = rng.randrange(len(mine))
                out = store.revert(mine[i][0], author="codex")
                mine[i] = (mine[i][0], out["version"])
                ack(op="revert", id=mine[i][0], version=out["version"])
            elif choice < 0.9:
                store.feedback([m for m, _ in rng.sample(mine, 2)], "helpful", author="claude-code")
                ack(op="feedback")
            else:  # a person edits a file by hand; somna picks it up
                path = store.root / "memory" / "by-hand" / f"hand-{word}.md"
                path.parent.mkdir(exist_ok=True)
                path.write_text(
                    f"Written by hand {word}: the VPN needs split tunnelling.\n", encoding="utf-8"
                )
                store.sync()
                ack(op="hand", path=path.relative_to(store.root).as_posix())
        except SomnaError as exc:  # a conflict or an edit that does not apply: reported, not lost
            mine = [
                (m, store.read(m)["version"]) for m, _ in mine if (store.root / f"memory/{m}.md").exists()
            ]
            ack(op="error", error=type(exc).__name__)


def mcp_worker(store_path: str, rng: random.Random, ack: Any) -> None:
    """An agent driving a real `somna serve` (the victim) over stdio: writes and edits, acked on each result."""
    import anyio
    from mcp import ClientSession, StdioServerParameters, stdio_client

    async def main() -> None:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "somna", "--store", store_path, "serve"], env=ENV
        )
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            async with stdio_client(params, errlog=devnull) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                ack(ready=True)
                mine: list[str] = []
                n = 0
                while True:
                    n += 1
                    if mine and rng.random() < 0.35:
                        mid = rng.choice(mine)
                        got = await s.call_tool("read", {"id": mid})
                        res = await s.call_tool(
                            "propose_edit",
                            {
                                "id": mid,
                                "op": "append",
                                "text": f"Also {n}.",
                                "base_version": got.structured_content["version"],
                            },
                        )
                        op = "edit"
                    else:
                        res = await s.call_tool(
                            "write",
                            {
                                "content": f"MCP fact {n}: queue {rng.randrange(10**9)} "
                                "drains every 5 minutes.",
                                "force": True,
                            },
                        )
                        op = "write"
                    if res.is_error:
                        ack(op="error", error="tool")
                        continue
                    out = res.structured_content
                    if op == "write":
                        mine.append(out["id"])
                    ack(op=op, id=out["id"], version=out["version"])

    anyio.run(main)


# -- the harness --------------------------------------------------------------------------------------
def somna(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "somna", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ENV,
        timeout=timeout,
    )


def git(store: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=store, capture_output=True, text=True, check=False).stdout


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text(encoding="utf-8")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def classify(report: dict[str, Any]) -> list[str]:
    """What the kill left behind, as doctor saw it before any repair."""
    found = []
    if report["interrupted_writes"]:
        found.append("temp file of an interrupted write")
    if report["git_locks"] or report["git_interrupted"]:
        found.append("git lock / interrupted git command")
    if report["uncommitted"]:
        found.append("written, not committed")
    if (
        report["not_indexed"]
        or report["stale_index"]
        or report["index_without_file"]
        or report["index_problem"]
    ):
        found.append("index drift")
    if report["git_problem"]:
        found.append("git broken")
    return found or ["clean"]


def run_one(store: Path, kind: str, seed: int, rng: random.Random, acked: dict[str, str]) -> dict[str, Any]:
    """One writer, one SIGKILL, then the checks. Returns what was seen."""
    delay = rng.uniform(0.05, 1.5)
    if kind == "cli":
        cmd = [
            sys.executable,
            "-m",
            "somna",
            "--store",
            str(store),
            "add",
            "--json",
            "--force",
            f"CLI fact {seed}: the cache for job {rng.randrange(10**6)} lives in /var/cache/job-{seed}.",
        ]
        delay = rng.uniform(0.2, 1.3)  # start-up included: the CLI imports for ~0.5–1 s
    elif kind == "daemon":
        cmd = [sys.executable, "-m", "somna", "--store", str(store), "daemon", "--idle", "1"]
        delay = rng.uniform(0.8, 4.0)  # start-up, then hand edits picked up and sleep cycles run
    else:
        cmd = [sys.executable, __file__, "--worker", str(store), kind, str(seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    stop = threading.Event()
    hand: list[str] = []
    if kind == "daemon":  # a person keeps writing files by hand while the daemon runs; it commits them

        def person() -> None:
            folder = store / "memory" / "by-hand"
            folder.mkdir(exist_ok=True)
            (store / "inbox").mkdir(exist_ok=True)
            (store / "inbox" / f"session-{seed}.jsonl").write_text(
                json.dumps({"type": "user", "message": {"content": f"session {seed}"}}) + "\n",
                encoding="utf-8",
            )
            n = 0
            while not stop.is_set():
                n += 1
                path = folder / f"daemon-{seed}-{n}.md"
                path.write_text(f"Written by hand while the daemon ran ({seed}/{n}).\n", encoding="utf-8")
                hand.append(path.relative_to(store).as_posix())
                stop.wait(0.15)

        helper = threading.Thread(target=person, daemon=True)
        helper.start()
    lines: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            ready.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    if kind not in ("cli", "daemon"):
        ready.wait(60)
    time.sleep(delay)
    exited_before = proc.poll() is not None
    victim = proc.pid
    if kind == "mcp":  # the victim is the `somna serve` the worker drives
        victim = next((pid for pid in children(proc.pid) if b"serve" in cmdline(pid)), proc.pid)
        exited_before = not Path(f"/proc/{victim}").exists()
    if not exited_before:
        os.kill(victim, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    stop.set()
    if kind == "daemon":
        helper.join(5)
        for rel in hand:
            acked[Path(rel).stem] = rel
    t.join(5)
    err_tail = proc.stderr.read()[-500:] if proc.stderr else ""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    ops: Counter[str] = Counter()
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if kind == "cli" and "id" in item and proc.returncode == 0:
            acked[item["id"]] = item["path"]
            ops["write"] += 1
        elif item.get("op") in ("write",):
            acked[item["id"]] = f"memory/{item['id']}.md"
        if item.get("op") == "hand":
            acked[Path(item["path"]).stem] = item["path"]
        if "op" in item:
            ops[item["op"] if item["op"] != "error" else f"error:{item['error']}"] += 1
    # 1. the store opens and nothing on disk is torn
    from somna.notes import parse
    from somna.store import Store

    opened = True
    torn: list[str] = []
    try:
        s = Store(store)
        s.close()
    except Exception as exc:  # noqa: BLE001 -- any failure to open is the finding
        opened = False
        torn.append(f"open: {exc}")
    for path in (store / "memory").rglob("*.md"):
        if path.name.startswith("."):
            continue
        try:
            parse(path.read_text(encoding="utf-8"))
        except Exception as exc:  # noqa: BLE001
            torn.append(f"{path.relative_to(store)}: {exc}")
    # 2. what doctor sees before repair
    before = json.loads(somna("--store", str(store), "doctor", "--json").stdout)[0]
    # 3. repair
    after = json.loads(somna("--store", str(store), "doctor", "--repair", "--json").stdout)[0]
    leftovers = [str(p.relative_to(store)) for p in store.rglob(".tmp-*") if ".somna" not in p.parts]
    locks = [str(p.relative_to(store)) for p in (store / ".git").rglob("*.lock")]
    # 4. acknowledged writes survive
    head = set(git(store, "ls-tree", "-r", "--name-only", "HEAD").split("\n"))
    from somna.index import Index

    index = Index(store / ".somna")
    try:
        lost = [
            i
            for i, rel in acked.items()
            if not (store / rel).is_file() or rel not in head or index.get_path(rel) is None
        ]
    finally:
        index.close()
    ok = (
        opened
        and not torn
        and after["consistent"]
        and after["ok"]
        and not leftovers
        and not locks
        and not lost
    )
    return {
        "writer": kind,
        "delay_s": round(delay, 3),
        "exited_before_kill": exited_before,
        "ops": dict(ops),
        "left_behind": classify(before),
        "torn": torn,
        "after_repair_consistent": after["consistent"],
        "after_repair_ok": after["ok"],
        "repaired": {k: v for k, v in after.get("repaired", {}).items() if v},
        "leftover_temp": leftovers,
        "leftover_locks": locks,
        "lost_acknowledged": lost,
        "ok": ok,
        "stderr_tail": "" if ok else err_tail,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--store", help="store folder (default: a fresh one under /tmp)")
    ap.add_argument("--out", default=str(RESULTS / "crash"), help="results path without suffix ('' for none)")
    ap.add_argument("--worker", nargs=3, metavar=("STORE", "KIND", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return 0
    store = Path(args.store or f"/tmp/somna-crash-{os.getpid()}")
    assert somna("init", str(store)).returncode == 0
    rng = random.Random(args.seed)
    acked: dict[str, str] = {}
    results = []
    started = time.monotonic()
    for i in range(args.iterations):
        kind = WRITERS[i % len(WRITERS)]
        res = run_one(store, kind, args.seed * 1000 + i, rng, acked)
        results.append(res)
        print(
            f"{i + 1:>3}/{args.iterations} {kind:<5} kill after {res['delay_s']:.2f}s: "
            f"{', '.join(res['left_behind'])} -> {'ok' if res['ok'] else 'FAILED ' + json.dumps(res)}",
            file=sys.stderr,
        )
    left = Counter(x for r in results for x in r["left_behind"])
    summary = {
        "iterations": len(results),
        "passed": sum(r["ok"] for r in results),
        "killed_mid_run": sum(not r["exited_before_kill"] for r in results),
        "by_writer": dict(Counter(r["writer"] for r in results)),
        "left_behind": dict(left),
        "acknowledged_writes": len(acked),
        "lost_acknowledged": sorted({x for r in results for x in r["lost_acknowledged"]}),
        "torn_files": sum(len(r["torn"]) for r in results),
        "seconds": round(time.monotonic() - started, 1),
        "ops": dict(sum((Counter(r["ops"]) for r in results), Counter())),
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(
            json.dumps({"summary": summary, "runs": results}, indent=2) + "\n", encoding="utf-8"
        )
        md = [
            "# Crash test: kill -9 a writer at random points",
            "",
            f"`python bench/crash.py --iterations {args.iterations} --seed {args.seed}` "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {summary['seconds']} s)",
            "",
            f"- iterations: **{summary['iterations']}**, passed all checks: **{summary['passed']}**; "
            f"killed while running: {summary['killed_mid_run']} (the rest had already finished: a CLI `add`)",
            f"- writers: {summary['by_writer']}",
            f"- acknowledged writes (all iterations): {summary['acknowledged_writes']}, lost: "
            f"**{len(summary['lost_acknowledged'])}**; torn files seen: **{summary['torn_files']}**",
            f"- operations acknowledged before the kills: {summary['ops']}",
            "",
            "What each kill left behind (doctor, before `--repair`; one kill may leave several):",
            "",
            "| state | kills |",
            "| --- | --- |",
            *[f"| {k} | {v} |" for k, v in sorted(left.items(), key=lambda kv: -kv[1])],
            "",
            "After each kill: the store opened, every note parsed, and `somna doctor --repair` left it consistent "
            "(no temp file, no git lock, nothing uncommitted, index = files, `git fsck` clean) in "
            f"{summary['passed']} of {summary['iterations']} iterations.",
            "",
        ]
        out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0 if summary["passed"] == summary["iterations"] else 1


if __name__ == "__main__":
    sys.exit(main())
