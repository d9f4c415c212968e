"""Benchmark: memory of one shared `somna serve --http` for ten clients vs ten stdio `somna serve`.

    .venv/bin/python bench/shared_rss.py [--clients 10] [--memories 200]

Every server runs with the real model (SOMNA_EMBEDDER=minilm) on one store of `--memories` memories, and is
measured only after its model has loaded (its "embedding model ... ready" log line) and every client has
run a search that used vectors (`"mode": "hybrid"`). Three set-ups, one after the other:

- stdio: N `somna serve` processes, one per client (SOMNA_ATTACH=0), each with its own model;
- shared, HTTP clients: one `somna serve --http`, N SDK streamable-HTTP clients in this process;
- shared, attached: the same server, plus N stdio `somna serve` processes that attach to it (what N harness
  sessions launch once a shared server runs): light proxies with no store and no model.

Memory is VmRSS from /proc/<pid>/status, summed over the server process and its children (RSS counts a
shared library once per process, so it overstates the stdio set-up a little; PSS, from
/proc/<pid>/smaps_rollup, splits shared pages fairly and is reported beside it). Writes
bench/results/shared_rss.json and .md; exit status 0 when the shared set-up with attached sessions uses
less than half the memory of the stdio set-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODEL_READY = re.compile(r"embedding model .* (ready|unavailable)")
TOPICS = [
    "kafka",
    "redis",
    "nginx",
    "postgres",
    "celery",
    "grafana",
    "vault",
    "consul",
    "envoy",
    "minio",
    "terraform",
    "ansible",
    "docker",
    "helm",
    "jenkins",
    "sentry",
    "stripe",
    "twilio",
    "s3",
    "bigquery",
]


# -- /proc ---------------------------------------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="utf-8").splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        for c in tree.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode().strip()
    except OSError:
        return ""


def measure(pids: list[int]) -> dict[str, Any]:
    procs = [
        {"pid": p, "cmd": cmdline(p)[-80:], "rss_kb": _status_kb(p, "VmRSS"), "pss_kb": _pss_kb(p)}
        for p in pids
    ]
    procs = [p for p in procs if p["rss_kb"]]
    pss = [p["pss_kb"] for p in procs]
    return {
        "processes": procs,
        "rss_mb": round(sum(p["rss_kb"] for p in procs) / 1024, 1),
        "pss_mb": round(sum(pss) / 1024, 1) if all(v is not None for v in pss) else None,
    }


def somna_children() -> list[int]:
    return [p for p in descendants(os.getpid()) if " somna" in cmdline(p) or "-m somna" in cmdline(p)]


# -- helpers -------------------------------------------------------------------------------------------------


def env(**extra: str) -> dict[str, str]:
    out = {
        **os.environ,
        "SOMNA_EMBEDDER": "minilm",
        "SOMNA_LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **extra,
    }
    out.pop("SOMNA_STORE", None)
    return out


def make_store(root: Path, n: int) -> Path:
    store = root / "store"
    subprocess.run(
        [sys.executable, "-m", "somna", "init", str(store)], check=True, capture_output=True, env=env()
    )
    sys.path.insert(0, str(HERE.parent / "src"))
    from somna.store import Store  # the library, for a fast bulk write (no model needed here)

    s = Store(store)
    s.write_many(
        [
            {
                "content": f"The {TOPICS[i % len(TOPICS)]} service of team {i} listens on port {9000 + i}; "
                f"restart it with `systemctl restart {TOPICS[i % len(TOPICS)]}-{i}` after a config change.",
                "type": "fact",
                "tags": [TOPICS[i % len(TOPICS)]],
            }
            for i in range(n)
        ],
        author="bench",
    )
    s.close()
    return store


async def wait_for(pattern: re.Pattern[str], logs: list[Path], timeout: float) -> float:
    start = time.monotonic()
    while True:
        texts = [p.read_text(encoding="utf-8", errors="replace") if p.exists() else "" for p in logs]
        if all(pattern.search(t) for t in texts):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            missing = [str(p) for p, t in zip(logs, texts, strict=True) if not pattern.search(t)]
            raise TimeoutError(f"no model after {timeout:.0f} s in {missing}")
        await anyio.sleep(0.25)


async def search_all(sessions: list[ClientSession]) -> list[str]:
    modes: list[str] = []
    for i, s in enumerate(sessions):
        result = await s.call_tool("search", {"query": f"{TOPICS[i % len(TOPICS)]} port restart"})
        assert not result.is_error, result.content
        modes.append((result.structured_content or {}).get("mode", "?"))
    return modes


async def settle() -> None:
    await anyio.sleep(2.0)  # let freed memory be returned and background threads finish


# -- the three set-ups ---------------------------------------------------------------------------------------


async def stdio_setup(store: Path, clients: int, logs: Path, timeout: float) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        sessions, errs = [], []
        for i in range(clients):
            err_path = logs / f"stdio-{i}.log"
            err = stack.enter_context(open(err_path, "w", encoding="utf-8"))
            params = StdioServerParameters(
                command=sys.executable,
                args=["-m", "somna", "--store", str(store), "serve"],
                env=env(SOMNA_ATTACH="0"),
            )
            read, write = await stack.enter_async_context(stdio_client(params, errlog=err))
            s = await stack.enter_async_context(
                ClientSession(read, write, client_info=Implementation(name=f"stdio-{i}", version="1"))
            )
            await s.initialize()
            sessions.append(s)
            errs.append(err_path)
        loaded = await wait_for(MODEL_READY, errs, timeout)
        modes = await search_all(sessions)
        await settle()
        return {"model_loaded_s": round(loaded, 1), "search_modes": modes, **measure(somna_children())}


async def shared_setup(store: Path, clients: int, logs: Path, timeout: float) -> dict[str, dict[str, Any]]:
    log = logs / "http-server.log"
    info_file = store / ".somna" / "http.json"
    with open(log, "w", encoding="utf-8") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "somna", "--store", str(store), "serve", "--http", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env(),
        )
    out: dict[str, dict[str, Any]] = {}
    try:
        deadline = time.monotonic() + timeout
        while not (
            info_file.exists() and json.loads(info_file.read_text(encoding="utf-8"))["pid"] == server.pid
        ):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text(encoding="utf-8")
            await anyio.sleep(0.1)
        url = json.loads(info_file.read_text(encoding="utf-8"))["url"]
        token = (
            (store / ".somna" / "http-token").read_text(encoding="utf-8").strip()
        )  # made at the first start
        loaded = await wait_for(MODEL_READY, [log], timeout)

        async with AsyncExitStack() as stack:
            sessions = []
            for i in range(clients):
                client = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300)
                    )
                )
                read, write = await stack.enter_async_context(streamable_http_client(url, http_client=client))
                s = await stack.enter_async_context(
                    ClientSession(read, write, client_info=Implementation(name=f"http-{i}", version="1"))
                )
                await s.initialize()
                sessions.append(s)
            modes = await search_all(sessions)
            await settle()
            out["http_clients"] = {
                "model_loaded_s": round(loaded, 1),
                "search_modes": modes,
                **measure([server.pid, *descendants(server.pid)]),
            }

        async with AsyncExitStack() as stack:
            sessions, errs = [], []
            for i in range(clients):
                err_path = logs / f"attached-{i}.log"
                err2 = stack.enter_context(open(err_path, "w", encoding="utf-8"))
                params = StdioServerParameters(
                    command=sys.executable, args=["-m", "somna", "--store", str(store), "serve"], env=env()
                )
                read, write = await stack.enter_async_context(stdio_client(params, errlog=err2))
                s = await stack.enter_async_context(
                    ClientSession(read, write, client_info=Implementation(name=f"attached-{i}", version="1"))
                )
                await s.initialize()
                sessions.append(s)
                errs.append(err_path)
            await wait_for(re.compile("attached to the shared somna server"), errs, 30)
            modes = await search_all(sessions)
            await settle()
            proxies = [p for p in somna_children() if p != server.pid and p not in descendants(server.pid)]
            both = measure([server.pid, *descendants(server.pid), *proxies])
            both["server_rss_mb"] = measure([server.pid, *descendants(server.pid)])["rss_mb"]
            both["proxy_rss_mb"] = [round(p["rss_kb"] / 1024, 1) for p in measure(proxies)["processes"]]
            out["attached"] = {"search_modes": modes, **both}
    finally:
        server.terminate()
        server.wait(timeout=60)
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "mem_total_mb": round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024),
    }


def markdown(r: dict[str, Any]) -> str:
    n = r["clients"]
    stdio, http, att = r["stdio"], r["shared"]["http_clients"], r["shared"]["attached"]
    rows = [
        (
            f"{n} × `somna serve` (stdio), each with its model",
            stdio["rss_mb"],
            stdio["pss_mb"],
            len(stdio["processes"]),
        ),
        (
            f"1 × `somna serve --http`, {n} HTTP clients",
            http["rss_mb"],
            http["pss_mb"],
            len(http["processes"]),
        ),
        (
            f"1 × `somna serve --http` + {n} attached `somna serve`",
            att["rss_mb"],
            att["pss_mb"],
            len(att["processes"]),
        ),
    ]
    lines = [
        f"# Shared server memory: {n} clients ({r['memories']} memories, SOMNA_EMBEDDER=minilm)",
        "",
        "| set-up | RSS (MB) | PSS (MB) | processes |",
        "|---|---:|---:|---:|",
        *[f"| {a} | {b:,.0f} | {'' if c is None else f'{c:,.0f}'} | {d} |" for a, b, c, d in rows],
        "",
        f"- shared with attached sessions / stdio: **{r['ratio_attached']:.2f}×** RSS "
        f"({r['saved_mb']:,.0f} MB saved); shared server alone / stdio: {r['ratio_http']:.2f}×",
        f"- one stdio server: {r['per_stdio_mb']:,.0f} MB RSS; the shared server with {n} sessions: "
        f"{att['server_rss_mb']:,.0f} MB; one attached proxy: {r['per_proxy_mb']:,.0f} MB",
        f"- every search ran on words and vectors: {r['all_hybrid']}",
        f"- machine: {r['machine']['cpu']} ({r['machine']['cpus']} CPUs), Python {r['machine']['python']}",
        f"- acceptance (attached < 0.5 × stdio): {'pass' if r['ok'] else 'FAIL'}",
        "",
    ]
    return "\n".join(lines)


async def run(clients: int, memories: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="somna-rss-") as tmp:
        root = Path(tmp)
        store = make_store(root, memories)
        logs = root / "logs"
        logs.mkdir()
        stdio = await stdio_setup(store, clients, logs, timeout)
        shared = await shared_setup(store, clients, logs, timeout)
    att, http = shared["attached"], shared["http_clients"]
    proxies = att["proxy_rss_mb"] or [0.0]
    modes = stdio["search_modes"] + http["search_modes"] + att["search_modes"]
    r = {
        "clients": clients,
        "memories": memories,
        "stdio": stdio,
        "shared": shared,
        "ratio_attached": att["rss_mb"] / stdio["rss_mb"],
        "ratio_http": http["rss_mb"] / stdio["rss_mb"],
        "saved_mb": stdio["rss_mb"] - att["rss_mb"],
        "per_stdio_mb": stdio["rss_mb"] / max(len(stdio["processes"]), 1),
        "per_proxy_mb": sum(proxies) / len(proxies),
        "all_hybrid": all(m == "hybrid" for m in modes),
        "machine": machine(),
    }
    r["ok"] = r["ratio_attached"] < 0.5 and r["all_hybrid"]
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--memories", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the models to load")
    ap.add_argument("--name", default="shared_rss")
    args = ap.parse_args()
    report = anyio.run(run, args.clients, args.memories, args.timeout)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = markdown(report)
    (RESULTS / f"{args.name}.md").write_text(md, encoding="utf-8")
    print(md)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
