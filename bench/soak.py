"""Soak: 8 processes — MCP servers, the CLI and the daemon — on one store for 60 s; nothing acknowledged is
lost. Writes bench/results/soak.{md,json}.

    python bench/soak.py [--seconds 60] [--servers 5] [--cli 2] [--seed 1]

Processes, all real and sharing one store:
- ``--servers`` `somna serve` processes, each driven by an MCP SDK stdio client (an agent): writes (some
  near-duplicates, for sleep-time to merge), read + propose_edit (append / str_replace; some from a stale
  version, so conflicts happen), revert, search, feedback, history;
- ``--cli`` lanes of `somna` commands, one process at a time each: add, search, show, revert, a file written
  by hand into memory/, and `somna capture` of a transcript into the inbox (the daemon then sleeps on it);
- one `somna daemon --idle 5`: commits hand edits, runs sleep-time cycles on new inbox items.

Every operation that succeeded is an acknowledgement: (id, version). Afterwards (the daemon stopped):
every acknowledged write is on disk, in HEAD and in the index; every acknowledged version of any note is a
blob in git's history (so an edit that a later revert or merge replaced is still there); no file is corrupt;
`somna doctor` reports the store consistent and ok. Conflicts are counted as conflicts, never as lost data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import Implementation

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ENV = {**os.environ, "SOMNA_EMBEDDER": "hash", "SOMNA_ATTACH": "0", "SOMNA_LOG_LEVEL": "ERROR"}
TOPICS = [
    "retry on 429",
    "ruff before commit",
    "postgres port 5433",
    "feature flags yaml",
    "ci cache key",
    "bastion port 2222",
    "uv pip compile",
    "split tunnelling vpn",
    "pytest -x -q",
    "docker layer cache",
]


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


class Tally:
    """Acknowledged operations and errors, by process kind."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.writes: dict[str, str] = {}  # id -> path
        self.versions: list[tuple[str, str, str]] = []  # (op, id or path, version)
        self.latency: defaultdict[str, list[float]] = defaultdict(list)
        self.samples: list[str] = []

    def error(self, kind: str, text: str) -> None:
        low = text.lower()
        cat = (
            "conflict"
            if "conflict" in low
            else "duplicate"
            if "near-duplicate" in low
            else "already has the text"
            if "already has the text" in low
            else "only one version"
            if "only one version" in low
            else "busy"
            if "locked by another" in low
            else "other"
        )
        self.errors[f"{kind}:{cat}"] += 1
        if cat == "other" and len(self.samples) < 20:
            self.samples.append(f"{kind}: {text[:300]}")


async def agent(
    store: Path, name: str, until: float, tally: Tally, rng: random.Random, pool: list[str]
) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "somna", "--store", str(store), "serve"], env=ENV
    )
    versions: dict[str, str] = {}

    async def call(tool: str, **args: Any) -> dict[str, Any] | None:
        t0 = time.monotonic()
        result = await session.call_tool(tool, args)
        tally.latency[tool].append(time.monotonic() - t0)
        if result.is_error:
            tally.error("mcp", " ".join(getattr(c, "text", "") for c in result.content))
            return None
        tally.ops[f"mcp:{tool}"] += 1
        return result.structured_content

    with open(os.devnull, "w", encoding="utf-8") as devnull:
        async with stdio_client(params, errlog=devnull) as (read, write):
            async with ClientSession(
                read, write, client_info=Implementation(name=name, version="1")
            ) as session:
                await session.initialize()
                n = 0
                while time.monotonic() < until:
                    n += 1
                    r = rng.random()
                    if r < 0.25 or len(pool) < 5:
                        topic = rng.choice(TOPICS)
                        dup = rng.random() < 0.2
                        text = (
                            f"Lesson on {topic}: always do it this way, it saved the build."
                            if dup
                            else f"{name} #{n}: {topic} — value {rng.randrange(10**9)} in "
                            f"service-{rng.randrange(10**6)}."
                        )
                        out = await call("write", content=text, force=dup, type="lesson")
                        if out:
                            pool.append(out["id"])
                            versions[out["id"]] = out["version"]
                            tally.writes[out["id"]] = out["path"]
                            tally.versions.append(("write", out["id"], out["version"]))
                    elif r < 0.5:
                        mid = rng.choice(pool)
                        stale = versions.get(mid) if rng.random() < 0.3 else None
                        if stale is None:
                            got = await call("read", id=mid)
                            if not got:
                                continue
                            stale = got["version"]
                            body = got["content"]
                        else:
                            body = ""
                        marker = f"{name}-{n}"
                        if (
                            body
                            and rng.random() < 0.3
                            and (line := body.splitlines()[0])
                            and body.count(line) == 1
                        ):
                            out = await call(
                                "propose_edit",
                                id=mid,
                                op="str_replace",
                                base_version=stale,
                                old=line,
                                new=f"{line} [{marker}]",
                            )
                        else:
                            out = await call(
                                "propose_edit",
                                id=mid,
                                op="append",
                                base_version=stale,
                                text=f"Seen again by {marker}.",
                            )
                        if out and out.get("status") == "applied":
                            versions[mid] = out["version"]
                            tally.versions.append(("edit", mid, out["version"]))
                    elif r < 0.55:
                        mid = rng.choice(pool)
                        out = await call("revert", id=mid)
                        if out:
                            versions[mid] = out["version"]
                            tally.versions.append(("revert", mid, out["version"]))
                    elif r < 0.8:
                        await call("search", query=rng.choice(TOPICS), limit=5)
                    elif r < 0.93:
                        await call(
                            "feedback",
                            ids=rng.sample(pool, min(2, len(pool))),
                            signal=rng.choice(["helpful", "harmful"]),
                        )
                    else:
                        await call("history", id=rng.choice(pool), limit=5)


async def cli_lane(
    store: Path, lane: int, until: float, tally: Tally, rng: random.Random, pool: list[str]
) -> None:
    base = [sys.executable, "-m", "somna", "--store", str(store)]
    hand = store / "memory" / f"by-hand-{lane}"
    n = 0
    while time.monotonic() < until:
        n += 1
        r = rng.random()
        t0 = time.monotonic()
        if r < 0.12:  # a person writes a new file in their editor; the daemon commits it
            hand.mkdir(exist_ok=True)
            path = hand / f"note-{lane}-{n}.md"  # the file name is the id: unique across lanes
            data = f"Written by hand in lane {lane}, #{n}: {rng.choice(TOPICS)}.\n".encode()
            path.write_bytes(data)
            rel = path.relative_to(store).as_posix()
            tally.writes[path.stem] = rel
            tally.versions.append(("hand", rel, version_of(data)))
            tally.ops["cli:hand-edit"] += 1
            await anyio.sleep(0.2)
            continue
        if r < 0.2:
            transcript = store.parent / f"transcript-{lane}-{n}.jsonl"
            transcript.write_text(
                json.dumps({"type": "user", "message": {"content": f"lane {lane} turn {n}"}}) + "\n",
                encoding="utf-8",
            )
            cmd, op = (
                [*base, "capture", "--transcript", str(transcript), "--session-id", f"s{lane}-{n}"],
                "capture",
            )
        elif r < 0.5:
            cmd, op = (
                [
                    *base,
                    "add",
                    "--json",
                    "--type",
                    "fact",
                    f"CLI lane {lane} #{n}: {rng.choice(TOPICS)} uses port {rng.randrange(1024, 65535)}.",
                ],
                "add",
            )
        elif r < 0.75:
            cmd, op = [*base, "search", "--json", "--words", rng.choice(TOPICS)], "search"
        elif r < 0.9 and pool:
            cmd, op = [*base, "show", "--json", rng.choice(pool)], "show"
        elif pool:
            cmd, op = [*base, "revert", rng.choice(pool)], "revert"
        else:
            continue
        proc = await anyio.run_process(cmd, env=ENV, check=False)
        tally.latency[f"cli:{op}"].append(time.monotonic() - t0)
        if proc.returncode != 0:
            tally.error(
                "cli", proc.stderr.decode("utf-8", "replace").strip() or f"{op} exited {proc.returncode}"
            )
            continue
        tally.ops[f"cli:{op}"] += 1
        if op == "add":
            out = json.loads(proc.stdout)
            pool.append(out["id"])
            tally.writes[out["id"]] = out["path"]
            tally.versions.append(("add", out["id"], out["version"]))


def git_blob_versions(store: Path) -> set[str]:
    """The version (hash of the bytes) of every blob git holds: each state any note was ever committed in."""
    objs = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)"],
        cwd=store,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    blobs = "\n".join(line.split()[0] for line in objs if line.endswith(" blob")) + "\n"
    raw = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=store, input=blobs.encode(), capture_output=True, check=True
    ).stdout
    out: set[str] = set()
    pos = 0
    while pos < len(raw):
        nl = raw.index(b"\n", pos)
        size = int(raw[pos:nl].split()[2])
        out.add(version_of(raw[nl + 1 : nl + 1 + size]))
        pos = nl + 1 + size + 1
    return out


def verify(store: Path, tally: Tally) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    from somna.index import Index

    head = set(
        subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", "HEAD"],
            cwd=store,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    )
    index = Index(store / ".somna")
    try:
        missing_disk = [i for i, rel in tally.writes.items() if not (store / rel).is_file()]
        missing_git = [i for i, rel in tally.writes.items() if rel not in head]
        missing_index = [i for i, rel in tally.writes.items() if index.get_path(rel) is None]
    finally:
        index.close()
    blobs = git_blob_versions(store)
    missing_versions = [v for v in tally.versions if v[2] not in blobs]
    doctor = json.loads(
        subprocess.run(
            [sys.executable, "-m", "somna", "--store", str(store), "doctor", "--json"],
            capture_output=True,
            text=True,
            env=ENV,
        ).stdout
    )[0]
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", "memory", "blocks", "proposals"],
        cwd=store,
        capture_output=True,
        text=True,
    ).stdout
    return {
        "acknowledged_writes": len(tally.writes),
        "acknowledged_versions": len(tally.versions),
        "missing_on_disk": missing_disk,
        "missing_in_git": missing_git,
        "missing_in_index": missing_index,
        "versions_not_in_git": missing_versions[:50],
        "corrupt_files": doctor["bad_files"],
        "doctor_consistent": doctor["consistent"],
        "doctor_ok": doctor["ok"],
        "git_status": status,
        "doctor": {
            k: doctor[k]
            for k in (
                "files",
                "indexed",
                "not_indexed",
                "stale_index",
                "index_without_file",
                "uncommitted",
                "git_locks",
                "interrupted_writes",
                "git_problem",
            )
        },
    }


async def soak(
    store: Path, seconds: float, servers: int, cli: int, seed: int
) -> tuple[Tally, dict[str, Any]]:
    tally = Tally()
    rng = random.Random(seed)
    pool: list[str] = []
    with open(store.parent / "daemon.err", "wb") as err:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "somna", "--store", str(store), "daemon", "--idle", "5"],
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    start = time.monotonic()
    until = start + seconds
    try:
        async with anyio.create_task_group() as tg:
            for i in range(servers):
                tg.start_soon(agent, store, f"agent-{i}", until, tally, random.Random(rng.random()), pool)
            for i in range(cli):
                tg.start_soon(cli_lane, store, i, until, tally, random.Random(rng.random()), pool)
    finally:
        elapsed = time.monotonic() - start
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
    cycles = subprocess.run(
        ["git", "log", "--format=%an", "--author=somna-sleep"], cwd=store, capture_output=True, text=True
    ).stdout.count("\n")
    human = subprocess.run(
        ["git", "log", "--format=%s", "--author=human"], cwd=store, capture_output=True, text=True
    ).stdout.count("picked up")
    tally.ops["daemon:sleep-commits"] = cycles
    tally.ops["daemon:hand-edits-committed"] = human
    result = verify(store, tally)
    result["seconds"] = round(elapsed, 1)
    result["daemon_exit"] = daemon.returncode
    return tally, result


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 1) if v else 0.0


def run(store: Path, seconds: float, servers: int, cli: int, seed: int) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, "-m", "somna", "init", str(store)], env=ENV, check=True, capture_output=True
    )
    tally, result = anyio.run(soak, store, seconds, servers, cli, seed)
    ops_total = sum(v for k, v in tally.ops.items() if not k.startswith("daemon:"))
    lost = (
        len(result["missing_on_disk"])
        + len(result["missing_in_git"])
        + len(result["missing_in_index"])
        + len(result["versions_not_in_git"])
    )
    return {
        "processes": {"mcp_servers": servers, "cli_lanes": cli, "daemon": 1, "total": servers + cli + 1},
        "ops_total": ops_total,
        "ops": dict(sorted(tally.ops.items())),
        "errors": dict(sorted(tally.errors.items())),
        "other_error_samples": tally.samples,
        "lost": lost,
        "latency_ms": {
            k: {"n": len(v), "p50": pct(v, 0.5), "p95": pct(v, 0.95)}
            for k, v in sorted(tally.latency.items())
        },
        **result,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--servers", type=int, default=5)
    ap.add_argument("--cli", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--store", help="store folder (default: a fresh one under /tmp)")
    ap.add_argument("--out", default=str(RESULTS / "soak"), help="results path without suffix ('' for none)")
    args = ap.parse_args()
    store = Path(args.store or f"/tmp/somna-soak-{os.getpid()}/store")
    store.parent.mkdir(parents=True, exist_ok=True)
    out = run(store, args.seconds, args.servers, args.cli, args.seed)
    ok = out["lost"] == 0 and not out["corrupt_files"] and out["doctor_consistent"] and out["doctor_ok"]
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        errs = out["errors"]
        md = [
            "# Soak: 8 processes on one store",
            "",
            f"`python bench/soak.py --seconds {args.seconds:g} --servers {args.servers} --cli {args.cli} "
            f"--seed {args.seed}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 2 shared cores; "
            "hash embedder)",
            "",
            f"- processes: {args.servers} `somna serve` (each driven by an MCP stdio client), {args.cli} CLI lanes "
            f"(one `somna` command at a time each), 1 `somna daemon`; {out['seconds']} s",
            f"- operations acknowledged: **{out['ops_total']}**; errors: {sum(errs.values())} "
            f"({', '.join(f'{k} {v}' for k, v in errs.items()) or 'none'})",
            f"- acknowledged writes: {out['acknowledged_writes']}, acknowledged versions (writes, edits, reverts, "
            f"hand edits): {out['acknowledged_versions']}",
            f"- **lost: {out['lost']}** (missing on disk {len(out['missing_on_disk'])}, in HEAD "
            f"{len(out['missing_in_git'])}, in the index {len(out['missing_in_index'])}; versions not in git "
            f"{len(out['versions_not_in_git'])}); corrupt files: {len(out['corrupt_files'])}",
            f"- `somna doctor` afterwards: consistent **{out['doctor_consistent']}**, ok {out['doctor_ok']}; "
            f"`git status` clean: {out['git_status'] == ''}",
            f"- sleep-time commits by the daemon: {out['ops'].get('daemon:sleep-commits', 0)}; hand edits it "
            f"committed: {out['ops'].get('daemon:hand-edits-committed', 0)}",
            "",
            "| operation | acknowledged | p50 ms | p95 ms |",
            "| --- | --- | --- | --- |",
        ]
        for k, v in out["ops"].items():
            lat = out["latency_ms"].get(k.split(":", 1)[1] if k.startswith("mcp:") else k, {})
            md.append(f"| {k} | {v} | {lat.get('p50', '')} | {lat.get('p95', '')} |")
        md += [
            "",
            "Conflicts are expected (agents edit from stale versions on purpose) and are reported to the "
            "agent with the current text; a conflict never loses data.",
            "",
        ]
        if out["other_error_samples"]:
            md += ["Other errors (samples):", "", *[f"- `{s[:200]}`" for s in out["other_error_samples"]], ""]
        path.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    print(json.dumps({k: v for k, v in out.items() if k not in ("latency_ms",)}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
