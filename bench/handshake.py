"""Benchmark: does `somna serve` answer the MCP handshake as fast as a bare SDK server?

Acceptance: the spawn→initialize median of `somna serve` is ≤ 1.3× that of a bare one-tool `MCPServer`
(bench/bare_server.py) measured interleaved in the same run (≤ 1.2× is the stricter target of a later
issue), and no torch, sentence-transformers, transformers or litellm module is imported before the
initialize result is sent.

    .venv/bin/python bench/handshake.py [--runs 20] [--warmup 1] [--seed N] [--no-importtime]

Each run spawns a fresh process with the SDK's stdio client and times from just before entering
`stdio_client` (the spawn) to the return of `ClientSession.initialize()`. Bare and somna alternate, in a
random order within each pair, so drift in machine load hits both alike. somna runs with its real default
embedder (SOMNA_EMBEDDER=minilm), which loads in the background once the handshake is answered.

Heavy-import check: somna logs, at INFO, "handshake answered; heavy modules loaded before it: none|[...]"
50 ms after answering `initialize`; each run's stderr goes to a file and that line is parsed. As an
independent check, one more somna spawn runs under `python -X importtime`: every import line written to
stderr before that log line happened before the answer, so a heavy module among them is a failure.

Writes bench/results/handshake.json and bench/results/handshake.md. `measure(runs)` is importable for a
(fast, synchronous) test: it runs its own event loop, so call it from a plain, non-async test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

from somna.server import HEAVY  # the modules the server refuses to import before its answer

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BARE = HERE / "bare_server.py"
LABELS = {
    "bare": "bare `MCPServer` (1 tool)",
    "somna": "`somna serve` (minilm)",
}
MARKER = re.compile(r"handshake answered; heavy modules loaded before it: (.*)$")
MODEL_READY = re.compile(r"embedding model .* (ready|unavailable)")
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")
LIMIT_RATIO = 1.3
STRICT_RATIO = 1.2


# -- statistics ------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_ms": statistics.median(values) * 1000,
        "p95_ms": percentile(values, 95) * 1000,
        "min_ms": min(values) * 1000,
        "max_ms": max(values) * 1000,
        "mean_ms": statistics.fmean(values) * 1000,
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    versions = {}
    for dist in ("mcp", "somna", "torch", "sentence-transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "packages": versions,
    }


# -- one spawn -------------------------------------------------------------------------------
def server_env(home: Path, pycache: Path | None = None) -> dict[str, str]:
    """The servers' environment. With `pycache`, bytecode is written to and read from there (--bytecode)."""
    drop = {"SOMNA_STORE"} | ({"PYTHONDONTWRITEBYTECODE"} if pycache else set())
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if pycache:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(
        {
            "SOMNA_EMBEDDER": "minilm",
            "SOMNA_LOG_LEVEL": "INFO",
            "SOMNA_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


async def _wait_for(path: Path, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
    deadline = time.monotonic() + timeout
    while True:
        for line in _read(path).splitlines():
            m = pattern.search(line)
            if m:
                return m
        if time.monotonic() > deadline:
            return None
        await anyio.sleep(0.02)


async def spawn_once(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    errpath: Path,
    *,
    wait_pattern: re.Pattern[str] | None = None,
    wait_timeout: float = 10.0,
) -> dict[str, Any]:
    """Spawn, initialize, (optionally wait for a stderr line), close. Returns timings and the server name."""
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=cwd)
    try:
        with errpath.open("w", encoding="utf-8") as errlog:
            t0 = time.perf_counter()
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    with anyio.fail_after(120):
                        result = await session.initialize()
                    t1 = time.perf_counter()
                    matched = await _wait_for(errpath, wait_pattern, wait_timeout) if wait_pattern else None
                    t2 = time.perf_counter()
            t3 = time.perf_counter()
    except Exception as exc:  # the server died or hung: say which, with the end of its stderr
        tail = "\n".join(_read(errpath).splitlines()[-15:])
        raise RuntimeError(
            f"{' '.join(argv)} failed: {exc!r}\n--- its stderr, last lines ---\n{tail}"
        ) from exc
    return {
        "handshake_s": t1 - t0,
        "server": result.server_info.name,
        "waited_s": t2 - t1,
        "close_s": t3 - t2,
        "matched": matched.group(0) if matched else None,
    }


def parse_heavy(line: str | None) -> list[str] | None:
    """The heavy modules named in somna's log line: [] for `none`, None when the line is missing."""
    if line is None:
        return None
    m = MARKER.search(line)
    if not m:
        return None
    value = m.group(1).strip()
    if value == "none":
        return []
    return re.findall(r"[\w.]+", value)


# -- the interleaved measurement -------------------------------------------------------------
def make_store(workdir: Path) -> Path:
    store = workdir / "store"
    proc = subprocess.run(
        [sys.executable, "-m", "somna", "init", str(store)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=server_env(workdir / "home"),
        cwd=workdir,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"somna init failed: {proc.stderr}")
    return store


def argv_for(kind: str, store: Path) -> list[str]:
    if kind == "bare":
        return [sys.executable, str(BARE)]
    return [sys.executable, "-m", "somna", "--store", str(store), "serve"]


def measure(
    runs: int = 20,
    *,
    warmup: int = 1,
    seed: int | None = None,
    importtime: bool = False,
    bytecode: str = "cached",
    keep_logs: Path | None = None,
    extra: dict[str, tuple[list[str], dict[str, str]]] | None = None,
) -> dict[str, Any]:
    """Interleaved spawn→initialize timings of the bare server and `somna serve`; see the module docstring.

    Synchronous (runs its own event loop). `warmup` pairs are run first and not counted.
    bytecode="cached": the servers get a private PYTHONPYCACHEPREFIX (and PYTHONDONTWRITEBYTECODE is
    dropped), so after the warm-up pair every module loads from bytecode, as in a normal install;
    bytecode="inherit": the environment as it is (with PYTHONDONTWRITEBYTECODE=1 and an editable install,
    somna's own modules are compiled from source on every spawn).
    extra: more servers (name -> argv, env) spawned in the same interleaved rounds (bench/run.py: the peer).
    """
    if bytecode not in ("cached", "inherit"):
        raise ValueError("bytecode must be 'cached' or 'inherit'")
    if bytecode == "cached" and warmup < 1:
        raise ValueError("bytecode='cached' needs at least one warm-up pair to fill the cache")
    load_before = os.getloadavg()
    if seed is None:
        seed = random.randrange(2**32)
    rng = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix="somna-bench-handshake-"))
    try:
        store = make_store(workdir)
        env = server_env(workdir / "home", workdir / "pycache" if bytecode == "cached" else None)
        logs = keep_logs or workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        extra = extra or {}
        kinds = ["bare", "somna", *extra]
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        per_run: list[dict[str, Any]] = []

        async def main() -> dict[str, Any] | None:
            for i in range(-warmup, runs):
                order = list(kinds)
                rng.shuffle(order)
                for kind in order:
                    errpath = logs / f"{kind}-{i}.stderr"
                    out = await spawn_once(
                        extra[kind][0] if kind in extra else argv_for(kind, store),
                        extra[kind][1] if kind in extra else env,
                        workdir,
                        errpath,
                        wait_pattern=MARKER if kind == "somna" else None,
                    )
                    row: dict[str, Any] = {"run": i, "kind": kind, "warmup": i < 0, **out}
                    if kind == "somna":
                        row["heavy_before_answer"] = parse_heavy(out["matched"])
                    per_run.append(row)
                    if i >= 0:
                        samples[kind].append(out["handshake_s"])
                    await anyio.sleep(0.1)  # let the previous process's teardown settle
            if not importtime:
                return None
            return await importtime_check(store, env, workdir, logs)

        imp = anyio.run(main, backend="asyncio")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    bare, somna = summary(samples["bare"]), summary(samples["somna"])
    ratio = somna["median_ms"] / bare["median_ms"]
    counted = [r for r in per_run if r["kind"] == "somna"]  # warm-up spawns count for the heavy check too
    missing = [f"{r['kind']}#{r['run']}" for r in counted if r["heavy_before_answer"] is None]
    heavy_runs = {
        f"{r['kind']}#{r['run']}": r["heavy_before_answer"] for r in counted if r["heavy_before_answer"]
    }
    result: dict[str, Any] = {
        "benchmark": "handshake",
        "runs": runs,
        "warmup_pairs": warmup,
        "seed": seed,
        "bytecode": bytecode,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "bare": bare,
        "somna": somna,
        "ratio": ratio,
        "arms": {k: summary(v) for k, v in samples.items()},
        "extra_ratios_to_bare": {k: summary(samples[k])["median_ms"] / bare["median_ms"] for k in extra},
        "pass_1_3": ratio <= LIMIT_RATIO,
        "pass_1_2": ratio <= STRICT_RATIO,
        "heavy_check": {
            "ok": not heavy_runs and not missing,
            "runs_with_heavy_before_answer": heavy_runs,
            "runs_without_log_line": missing,
        },
        "machine": machine(),
        "samples_ms": {k: [round(v * 1000, 2) for v in vs] for k, vs in samples.items()},
        "per_run": per_run,
    }
    if imp is not None:
        result["importtime"] = imp
    result["pass"] = (
        result["pass_1_3"] and result["heavy_check"]["ok"] and (imp is None or not imp["heavy_before_answer"])
    )
    return result


# -- python -X importtime --------------------------------------------------------------------
def _family(name: str) -> str | None:
    top = name.split(".", 1)[0]
    if top == "somna":
        return "somna"
    if top in ("mcp", "mcp_types"):
        return "mcp"
    return None


def parse_importtime(text: str) -> dict[str, Any]:
    """Import lines before somna's handshake log line, grouped: somna's own modules vs the mcp SDK's."""
    entries: list[dict[str, Any]] = []
    marker_at = None
    first_heavy_after: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines()):
        if marker_at is None and MARKER.search(line):
            marker_at = len(entries)
            continue
        m = IMPORT_LINE.match(line)
        if not m:
            continue
        name = m.group(4)
        if marker_at is not None:
            top = name.split(".", 1)[0]
            if top in HEAVY and top not in first_heavy_after:
                first_heavy_after[top] = lineno
        entries.append(
            {
                "self": int(m.group(1)),
                "cum": int(m.group(2)),
                "level": len(m.group(3)) // 2,
                "name": name,
                "parent": None,
                "before": marker_at is None,
            }
        )
    # importtime prints children before their parent (post-order): a line adopts the pending deeper lines.
    pending: list[int] = []
    for idx, e in enumerate(entries):
        keep = []
        for j in pending:
            if entries[j]["level"] > e["level"]:
                entries[j]["parent"] = idx
            else:
                keep.append(j)
        pending = keep + [idx]

    before = [e for e in entries if e["before"]]

    def outermost(fam: str) -> list[dict[str, Any]]:
        out = []
        for e in before:
            if _family(e["name"]) != fam:
                continue
            p = e["parent"]
            while p is not None and _family(entries[p]["name"]) != fam:
                p = entries[p]["parent"]
            if p is None:
                out.append(e)
        return out

    def family_stats(fam: str) -> dict[str, Any]:
        mods = [e for e in before if _family(e["name"]) == fam]
        outer = outermost(fam)
        return {
            "modules": len(mods),
            "self_ms": sum(e["self"] for e in mods) / 1000,
            "cumulative_ms": sum(e["cum"] for e in outer) / 1000,
            "outermost": [e["name"] for e in outer],
        }

    # Partition the self time of every import before the answer by who pulled it in: the nearest
    # ancestor (or itself) that is an mcp or a somna module; "other" is interpreter start-up, runpy, etc.
    attributed = {"somna": 0, "mcp": 0, "other": 0}
    for e in before:
        fam, p = _family(e["name"]), e["parent"]
        while fam is None and p is not None:
            fam, p = _family(entries[p]["name"]), entries[p]["parent"]
        attributed[fam or "other"] += e["self"]
    heavy_before = sorted({e["name"] for e in before if e["name"].split(".", 1)[0] in HEAVY})
    return {
        "marker_found": marker_at is not None,
        "imports_before_answer": len(before),
        "imports_after_answer": len(entries) - len(before),
        "total_self_before_answer_ms": sum(e["self"] for e in before) / 1000,
        "somna": family_stats("somna"),
        "mcp": family_stats("mcp"),
        "attributed_self_ms": {k: v / 1000 for k, v in attributed.items()},
        "heavy_before_answer": heavy_before,
        "heavy_imported_after_answer": sorted(first_heavy_after),
        "slowest_before_answer": [
            {"name": e["name"], "cumulative_ms": e["cum"] / 1000}
            for e in sorted((e for e in before if e["parent"] is None), key=lambda e: -e["cum"])[:8]
        ],
    }


async def importtime_check(store: Path, env: dict[str, str], workdir: Path, logs: Path) -> dict[str, Any]:
    """One somna spawn under -X importtime; waits for the model (up to 120 s) so the heavy imports show."""
    errpath = logs / "somna-importtime.stderr"
    argv = [sys.executable, "-X", "importtime", "-m", "somna", "--store", str(store), "serve"]
    out = await spawn_once(argv, env, workdir, errpath, wait_pattern=MODEL_READY, wait_timeout=120.0)
    parsed = parse_importtime(_read(errpath))
    parsed["handshake_ms_under_importtime"] = out["handshake_s"] * 1000
    parsed["model_ready_line"] = out["matched"]
    # Not part of the acceptance: how the process ends when the client closes it after the model loaded.
    # The SDK client waits PROCESS_TERMINATION_TIMEOUT (2 s) after closing stdin, then SIGTERMs the group.
    err = _read(errpath)
    parsed["close_after_model_s"] = out["close_s"]
    parsed["abort_at_exit"] = "terminate called" in err
    return parsed


# -- report ----------------------------------------------------------------------------------
def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    ok = "pass" if r["pass_1_3"] else "FAIL"
    strict = "pass" if r["pass_1_2"] else "fail"
    lines = [
        f"### Handshake: spawn → initialize result ({r['runs']} interleaved pairs, "
        f"{r['warmup_pairs']} warm-up, "
        f"bytecode {r['bytecode']})",
        "",
        "| server | median ms | p95 ms | min ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {LABELS[k]} | {a['median_ms']:.0f} | {a['p95_ms']:.0f} | {a['min_ms']:.0f} | "
            f"{a['max_ms']:.0f} |"
            for k, a in r["arms"].items()
        ),
        "",
        f"- ratio of medians somna / bare: **{r['ratio']:.2f}** — ≤ {LIMIT_RATIO}: **{ok}**; "
        f"≤ {STRICT_RATIO} (later target): {strict}",
    ]
    hc = r["heavy_check"]
    if hc["ok"]:
        lines.append("- heavy modules before the initialize answer (server log, every run): **none**")
    else:
        lines.append(
            f"- heavy modules before the answer: **FAIL** {hc['runs_with_heavy_before_answer']}; "
            f"runs with no log line: {hc['runs_without_log_line']}"
        )
    imp = r.get("importtime")
    if imp:
        att = imp["attributed_self_ms"]
        heavy = ", ".join(imp["heavy_before_answer"]) or "none"
        after = ", ".join(imp["heavy_imported_after_answer"]) or "none"
        lines += [
            f"- `-X importtime` (one spawn): heavy imports before the answer: **{heavy}**; imported after it "
            f"(background model load): {after}",
            f"- imports before the answer: somna's own {imp['somna']['modules']} modules "
            f"{imp['somna']['self_ms']:.0f} ms self / {imp['somna']['cumulative_ms']:.0f} ms cumulative "
            f"(incl. everything they import, mcp too); mcp SDK {imp['mcp']['modules']} modules "
            f"{imp['mcp']['self_ms']:.0f} ms self / {imp['mcp']['cumulative_ms']:.0f} ms cumulative; "
            f"all imports {imp['total_self_before_answer_ms']:.0f} ms",
            f"- the same {imp['total_self_before_answer_ms']:.0f} ms split by who imported it: "
            f"somna and what it imports apart from mcp {att['somna']:.0f} ms, "
            f"mcp and its dependencies {att['mcp']:.0f} ms, "
            f"imported outside any somna or mcp module (start-up, and imports run inside functions, e.g. "
            f"sqlite_vec from somna.db.connect) {att['other']:.0f} ms (times inflated by -X importtime)",
            "- largest outermost imports before the answer: "
            + ", ".join(f"{e['name']} {e['cumulative_ms']:.0f} ms" for e in imp["slowest_before_answer"][:5]),
        ]
    if imp and "close_after_model_s" in imp:
        lines.append(
            f"- (not acceptance) closing somna after its model loaded took {imp['close_after_model_s']:.1f} s"
            + (
                " and the process aborted at exit ('terminate called without an active exception')"
                if imp["abort_at_exit"]
                else ""
            )
            + "; the SDK client sends SIGTERM after 2 s"
        )
    lines.append(
        f"- machine: {m['platform']}, {m['cpu']}, {m['cpu_count']} CPUs ({m['cpus_usable']} usable), "
        f"Python {m['python']}, mcp {m['packages']['mcp']}; load average before/after "
        f"{r['loadavg_before'][0]:.2f}/{r['loadavg_after'][0]:.2f}"
    )
    return "\n".join(lines) + "\n"


def write_results(name: str, result: dict[str, Any], md: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(md, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="measured pairs (default 20)")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted pairs first (default 1)")
    ap.add_argument("--seed", type=int, default=None, help="seed for the order within each pair")
    ap.add_argument(
        "--bytecode",
        choices=("cached", "inherit"),
        default="cached",
        help="cached (default): servers use a private bytecode cache, filled by the warm-up; "
        "inherit: the environment as is (PYTHONDONTWRITEBYTECODE=1 recompiles somna each spawn)",
    )
    ap.add_argument("--no-importtime", action="store_true", help="skip the -X importtime spawn")
    ap.add_argument("--name", default="handshake", help="results file stem (default handshake)")
    ap.add_argument("--keep-logs", type=Path, help="keep each run's stderr in this directory")
    args = ap.parse_args(argv)
    result = measure(
        args.runs,
        warmup=args.warmup,
        seed=args.seed,
        importtime=not args.no_importtime,
        bytecode=args.bytecode,
        keep_logs=args.keep_logs,
    )
    md = markdown(result)
    write_results(args.name, result, md)
    print(md)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
