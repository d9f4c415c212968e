"""Every benchmark in one run, somna and the peer side by side: docs/benchmarks.{md,json} + docs/search_latency.png.

    scripts/bench.sh            # installs the bench extra and the peer's venv, then runs this
    .venv/bin/python bench/run.py [--quick] [--no-peer] [--out docs]

Rows (see bench/README.md for how each is measured): handshake (somna, bare MCPServer and the peer,
interleaved); tokens of the tool definitions and of the server instructions; RSS after initialize and
with the model loaded; warm search latency at 1k/10k/100k memories in-process and through the MCP client;
bulk import memories/s and writes/s through MCP; retrieval quality on letta-facts; RSS of 5 clients
through one shared server vs one server; a sleep cycle at 10k. `--quick`: fewer runs, 1k and 10k only,
no shared-server or sleep rows. The peer is mcp-memory-service in .venv-peer (scripts/bench.sh).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import handshake  # noqa: E402
import mcp_rows  # noqa: E402
import search_latency  # noqa: E402
import synth  # noqa: E402

LETTA = REPO.parent / "shared" / "data" / "letta-facts" / "letta_bench_gen_200.jsonl"
PEER_PY = mcp_rows.PEER_VENV / "bin" / "python"


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        kb = int(
            next(
                line.split()[1]
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            )
        )
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    from importlib import metadata

    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "packages": {n: v(n) for n in ("mcp", "torch", "sentence-transformers", "sqlite-vec", "sqlean.py")},
    }


class Run:
    def __init__(self, quick: bool, peer: bool, out: Path | None = None) -> None:
        self.out = out
        self.quick = quick
        self.peer = peer
        self.r: dict[str, Any] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "machine": machine(),
            "errors": {},
            "load": {},
        }
        self.tmp = Path(tempfile.mkdtemp(prefix="somna-bench-"))
        self.peer_home = self.tmp / "peer-home"
        self.peer_home.mkdir()

    def step(self, name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        before = os.getloadavg()[0]
        print(f"== {name} (load {before:.2f})", file=sys.stderr, flush=True)
        try:
            self.r[name] = fn()
        except Exception as exc:  # a step that fails is reported, the others still run
            self.r["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        self.r["load"][name] = {
            "before": round(before, 2),
            "after": round(os.getloadavg()[0], 2),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if self.out is not None:  # after every step, so an interrupted run still leaves its rows
            write(self.r, self.out)

    # -- the peer, in its own venv ---------------------------------------------------------------
    def peer_cmd(self, *args: str, timeout: float = 3600) -> dict[str, Any]:
        out = subprocess.run(
            [str(PEER_PY), str(HERE / "peer_side.py"), *args],
            capture_output=True,
            text=True,
            env=mcp_rows.peer_env(self.tmp / "unused.db", self.peer_home),
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"peer_side {args[0]} failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def peer_db(self, n: int) -> Path:
        """A peer database of the n synthetic memories (real vectors at 1k, pool vectors above)."""
        db = search_latency.STORES / f"peer-{n}.db"
        info = db.with_suffix(".json")
        if not (db.exists() and info.exists()):
            for p in db.parent.glob(db.name + "*"):
                p.unlink()
            res = self.peer_cmd(
                "fill", "--db", str(db), "--n", str(n), "--vectors", "real" if n <= 1000 else "pool"
            )
            info.write_text(json.dumps(res))
        return db

    # -- steps -------------------------------------------------------------------------------------
    def handshake(self) -> dict[str, Any]:
        extra = {}
        if self.peer:
            db = self.tmp / "peer-handshake.db"
            spec = mcp_rows.peer_spec(db, self.peer_home)
            extra["peer"] = (spec.argv, spec.env)
        res = handshake.measure(5 if self.quick else 15, importtime=False, extra=extra)
        res.pop("per_run", None)
        return res

    def sessions(self) -> dict[str, Any]:
        """Tokens, RSS, writes/s and search through MCP: somna on each store size, the peer at 1k and 10k."""
        emb = search_latency.model()
        out: dict[str, Any] = {"somna": {}, "peer": {}}
        qn = 30 if self.quick else 60
        for i, n in enumerate(self.sizes):
            root, _ = search_latency.build(n, emb)
            work = root
            writes = 0
            if n == self.sizes[0]:  # writes go to a copy, so the cached store stays as built
                work = self.tmp / f"somna-{n}"
                shutil.copytree(root, work, symlinks=True)
                writes = 30 if self.quick else 100
            qs = synth.queries(qn, seed=200 + i)
            out["somna"][str(n)] = mcp_rows.session_rows(mcp_rows.somna_spec(work), writes=writes, queries=qs)
            if self.peer and n <= 10_000:
                db = self.peer_db(n)
                pwork = db
                if writes:
                    pwork = self.tmp / f"peer-{n}.db"
                    shutil.copy(db, pwork)
                out["peer"][str(n)] = mcp_rows.session_rows(
                    mcp_rows.peer_spec(pwork, self.peer_home), writes=writes, queries=qs
                )
        return out

    def in_process(self) -> dict[str, Any]:
        emb = search_latency.model()
        out: dict[str, Any] = {
            "somna": search_latency.measure(self.sizes, 30 if self.quick else 60, mcp=False, emb=emb),
            "peer": {},
        }
        if self.peer:
            for i, n in enumerate(self.sizes):
                if n <= 10_000:
                    out["peer"][str(n)] = self.peer_cmd(
                        "search",
                        "--db",
                        str(self.peer_db(n)),
                        "--queries",
                        str(30 if self.quick else 60),
                        "--seed",
                        str(11 + i),
                    )
        return out

    def bulk_import(self) -> dict[str, Any]:
        """1,000 synthetic memories into a fresh store, embedded for real (write_many: one commit)."""
        from somna.store import Store

        emb = search_latency.model()
        n = 300 if self.quick else 1000
        items = synth.corpus(n).items()
        store = Store.init(self.tmp / "import", embedder=emb)
        t0 = time.perf_counter()
        store.write_many(items, author="bench")
        t = time.perf_counter() - t0
        store.close()
        out: dict[str, Any] = {"somna": {"n": n, "seconds": round(t, 1), "per_s": round(n / t, 1)}}
        if self.peer:
            res = self.peer_cmd(
                "fill", "--db", str(self.tmp / "peer-import.db"), "--n", str(n), "--vectors", "real"
            )
            out["peer"] = {"n": n, "seconds": res["fill_s"], "per_s": res["memories_per_s"]}
        return out

    def quality(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        res = subprocess.run(
            [
                sys.executable,
                str(HERE / "letta_retrieval.py"),
                "--no-variants",
                "--name",
                "letta_retrieval_run",
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        data = json.loads((HERE / "results" / "letta_retrieval_run.json").read_text())
        out["somna"] = {
            "metrics": data["modes"],
            "pass": data.get("pass"),
            "exit": res.returncode,
            "latency_ms": data.get("latency_ms"),
            "timing": data.get("timing"),
        }
        if self.peer:
            p = self.peer_cmd(
                "letta",
                "--db",
                str(self.tmp / "peer-letta.db"),
                "--data",
                str(LETTA),
                "--modes",
                "semantic,hybrid",
            )
            qs = [
                (r, q)
                for r, row in enumerate(json.loads(line) for line in LETTA.open() if line.strip())
                for q in row["question"]
            ]
            from letta_retrieval import split_metrics  # noqa: PLC0415

            rows = [{"row": r} for r, _ in qs]
            out["peer"] = {
                "metrics": {m: split_metrics(rows, ranks) for m, ranks in p["ranks"].items()},
                "latency_ms": p["latency_ms"],
                "load_s": p["load_s"],
            }
        return out

    def shared(self) -> dict[str, Any]:
        import anyio
        import shared_rss

        r = anyio.run(shared_rss.run, 5, 200, 900.0)
        one = r["per_stdio_mb"]
        return {
            "clients": 5,
            "one_stdio_server_mb": one,
            "shared_plus_5_attached_mb": r["shared"]["attached"]["rss_mb"],
            "shared_with_5_http_clients_mb": r["shared"]["http_clients"]["rss_mb"],
            "five_stdio_servers_mb": r["stdio"]["rss_mb"],
            "ratio_attached_to_one": round(r["shared"]["attached"]["rss_mb"] / one, 3),
            "ratio_http_to_one": round(r["shared"]["http_clients"]["rss_mb"] / one, 3),
            "per_proxy_mb": r["per_proxy_mb"],
            "all_hybrid": r["all_hybrid"],
        }

    def sleep(self) -> dict[str, Any]:
        emb = search_latency.model()
        root, _ = search_latency.build(10_000, emb)
        work = self.tmp / "sleep-10k"
        shutil.copytree(root, work, symlinks=True)
        env = {**os.environ, "SOMNA_EMBEDDER": "minilm", "HF_HUB_OFFLINE": "1"}
        env.pop("SOMNA_STORE", None)
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "somna", "--store", str(work), "sleep", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=1200,
        )
        t = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-2000:])
        report = json.loads(res.stdout)
        tokens = {k: v for k, v in report.items() if "token" in k or "cost" in k or k == "llm"}
        return {
            "memories": 10_000,
            "seconds": round(t, 1),
            "llm": tokens or "no LLM configured: no LLM pass ran",
            "report": {
                k: v for k, v in report.items() if isinstance(v, int | float | str | dict) and k != "markdown"
            },
        }

    def run(self) -> dict[str, Any]:
        self.sizes = [1000, 10_000] if self.quick else [1000, 10_000, 100_000]
        if self.peer and (why := mcp_rows.peer_available()):
            self.r["peer_unavailable"] = why
            self.peer = False
        self.step("handshake", self.handshake)
        self.step("sessions", self.sessions)
        self.step("in_process", self.in_process)
        self.step("bulk_import", self.bulk_import)
        self.step("quality", self.quality)
        if not self.quick:
            self.step("shared", self.shared)
            self.step("sleep", self.sleep)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    ap.add_argument("--from-json", type=Path, help="only re-render the table and plot from a results JSON")
    args = ap.parse_args(argv)
    if args.from_json:
        r = json.loads(args.from_json.read_text())
    else:
        r = Run(args.quick, not args.no_peer, args.out).run()
    print(write(r, args.out))
    return 0 if not r["errors"] else 1


def write(r: dict[str, Any], out: Path) -> str:
    import report  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    stem = "benchmarks-quick" if r.get("quick") else "benchmarks"
    (out / f"{stem}.json").write_text(json.dumps(r, indent=1, default=str) + "\n")
    md = report.markdown(r)
    (out / f"{stem}.md").write_text(md)
    report.plot(r, out / ("search_latency-quick.png" if r.get("quick") else "search_latency.png"))
    return md


if __name__ == "__main__":
    raise SystemExit(main())
