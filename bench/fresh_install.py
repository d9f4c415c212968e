"""Benchmark: from nothing to the first hybrid search, in a fresh venv, as a user installs somna.

    .venv/bin/python bench/fresh_install.py            # ~2-4 min: venv, pip install, model, first search
    .venv/bin/python bench/fresh_install.py --source /path/to/checkout

What a user runs is `pipx install git+<repo>` or `uvx --from git+<repo> somna serve`: both make a venv
with no pip inside (pipx shares one pip; uv needs none) and install the project into it. This machine
reaches no git host, so the bench does the same from a checkout: `python -m venv --without-pip`, then this
Python's pip with `--python` installs the checkout (a plain, non-editable install, through pip's usual
configuration: the package index, nothing pre-installed), and then:

- the installed distributions: none may be torch, sentence-transformers, transformers, tokenizers or
  nvidia-*;
- the venv's size on disk (`du`), which must be under 250 MB (and what pip itself would add);
- `somna model --json`: ready, on onnx, with the model file and its source;
- `somna init`, three `somna add`, then `somna search` must answer in mode "hybrid".

Times each step and the whole, from an empty folder to the first hybrid search. Writes
bench/results/<name>.json and .md (default fresh_install). Exit 0 when every check holds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
LIMIT_MB = 250
FORBIDDEN = ("torch", "sentence-transformers", "sentence_transformers", "transformers", "tokenizers")


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> tuple[float, str]:
    t0 = time.perf_counter()
    cwd = env["SOMNA_HOME"].rsplit("/", 1)[0] if env else None  # outside any project store
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        )
    return took, out.stdout


def measure(source: Path, work: Path) -> dict[str, Any]:
    venv = work / "venv"
    home = work / "home"
    t_start = time.perf_counter()
    steps: dict[str, float] = {}
    steps["venv"], _ = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", py]
    steps["pip install"], _ = run([*pip, "install", "--quiet", "--no-cache-dir", str(source)])
    _, listed = run([*pip, "list", "--format", "json"])
    dists = sorted(d["name"].lower() for d in json.loads(listed))
    forbidden = [d for d in dists if d in FORBIDDEN or d.startswith("nvidia")]
    size = du_mb(venv)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOMNA_", "VIRTUAL_ENV"))},
        "SOMNA_HOME": str(home),
        "SOMNA_CACHE": str(work / "cache"),
        "SOMNA_EMBEDDER": "minilm",
    }
    somna = str(venv / "bin" / "somna")
    steps["somna model"], model_out = run([somna, "model", "--json"], env)
    model = json.loads(model_out)
    steps["somna init"], _ = run([somna, "init"], env)
    t_add = time.perf_counter()
    for text in (
        "The staging database password rotates every Monday morning.",
        "Use tabs, not spaces, in the Makefile.",
        "The frontend is built with Vite and served by nginx.",
    ):
        run([somna, "add", text], env)
    steps["3 x somna add"] = time.perf_counter() - t_add
    steps["first search"], found = run([somna, "search", "--json", "when do db credentials change"], env)
    total = time.perf_counter() - t_start
    result = json.loads(found)
    hits = result.get("hits") or []
    return {
        "distributions": dists,
        "forbidden": forbidden,
        "venv_mb": round(size, 1),
        "model": model,
        "search_mode": result.get("mode"),
        "first_hit": (hits[0].get("title") or hits[0].get("id")) if hits else None,
        "steps_s": {k: round(v, 1) for k, v in steps.items()},
        "total_s": round(total, 1),
    }


def render(rep: dict[str, Any]) -> str:
    r = rep["result"]
    lines = [
        "# Fresh install: from nothing to the first hybrid search",
        "",
        f"{rep['meta']['date']} · {rep['meta']['machine']} · load {rep['meta']['load_before']} before, "
        f"{rep['meta']['load_after']} after · `bench/fresh_install.py`",
        "",
        f"- venv (no pip inside, as pipx and uvx make it): **{r['venv_mb']} MB** (limit {LIMIT_MB} MB); "
        f"{len(r['distributions'])} distributions; torch, sentence-transformers, transformers, tokenizers, "
        f"nvidia-*: {', '.join(r['forbidden']) or 'none'}",
        f"- `somna model`: ready={r['model']['ready']} on {r['model']['backend']}, file {r['model']['file']} "
        f"({r['model']['source']}), sha256 ok={r['model']['sha256_ok']}",
        f"- first `somna search`: mode {r['search_mode']}, top hit {r['first_hit']!r}",
        f"- from nothing to the first hybrid search: **{r['total_s']} s**",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        *(f"| {k} | {v} |" for k, v in r["steps_s"].items()),
        "",
        f"Pass: {rep['pass']}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=REPO, help="the checkout to install (default: this one)")
    ap.add_argument("--name", default="fresh_install")
    args = ap.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="somna-fresh-") as tmp:
        result = measure(args.source.resolve(), Path(tmp))
    ok = (
        not result["forbidden"]
        and result["venv_mb"] < LIMIT_MB
        and result["model"]["ready"]
        and result["search_mode"] == "hybrid"
    )
    rep = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "result": result,
        "pass": ok,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rep, indent=2) + "\n")
    md = render(rep)
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
