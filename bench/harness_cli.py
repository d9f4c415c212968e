"""Check: the real harness CLIs accept somna. Needs node/npm and the npm registry; not part of the tests.

    .venv/bin/python bench/harness_cli.py [--keep DIR]

In a throwaway folder it installs @anthropic-ai/claude-code and @modelcontextprotocol/inspector from npm,
and with HOME (and SOMNA_HOME) pointing into that folder:

1. `somna install claude-code` (which goes through `claude mcp add`, the `claude` CLI being on PATH, and
   writes the SessionEnd/PreCompact hooks into ~/.claude/settings.json);
2. `claude mcp list` must report somna "Connected" (Claude Code spawns `somna serve` and does the handshake);
3. the MCP Inspector CLI lists somna's tools and calls `search`, which must find a memory written before;
4. with `somna serve --http` running on the same store, `claude mcp list` again: the `somna serve` that
   Claude Code spawns attaches to the shared server, and is still "Connected";
5. `somna uninstall claude-code` and `claude mcp list` no longer shows somna.

Writes bench/results/harness_cli.json and .md; exit status 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SOMNA = Path(sys.executable).with_name("somna")
PACKAGES = ["@anthropic-ai/claude-code", "@modelcontextprotocol/inspector"]


def run(cmd: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def step(steps: list[dict[str, Any]], name: str, done: subprocess.CompletedProcess[str], ok: bool) -> bool:
    steps.append(
        {
            "step": name,
            "command": " ".join(done.args),
            "exit": done.returncode,
            "ok": ok,
            "output": (done.stdout + done.stderr)[-1500:],
        }
    )
    print(f"{'ok ' if ok else 'FAIL'} {name}", file=sys.stderr)
    return ok


def check(root: Path) -> dict[str, Any]:
    npm = root / "npm"
    home = root / "home"
    home.mkdir(parents=True)
    steps: list[dict[str, Any]] = []
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOMNA_", "CLAUDE_"))}
    installed = run(
        ["npm", "install", "--prefix", str(npm), "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
        base,
        timeout=600,
    )
    step(steps, "npm install " + " ".join(PACKAGES), installed, installed.returncode == 0)
    bin_dir = npm / "node_modules" / ".bin"
    env = {
        **base,
        "HOME": str(home),
        "SOMNA_HOME": str(home / ".somna"),
        "PATH": f"{bin_dir}{os.pathsep}{SOMNA.parent}{os.pathsep}{base.get('PATH', '')}",
    }
    version = run(["claude", "--version"], env)
    step(steps, "claude --version", version, version.returncode == 0)

    done = run([str(SOMNA), "install", "claude-code"], env)
    step(steps, "somna install claude-code", done, done.returncode == 0 and "claude mcp add" in done.stdout)
    hooks = json.loads((home / ".claude" / "settings.json").read_text(encoding="utf-8"))["hooks"]
    steps[-1]["ok"] &= all(
        "somna capture" in hooks[e][0]["hooks"][0]["command"] for e in ("SessionEnd", "PreCompact")
    )

    listed = run(["claude", "mcp", "list"], env)
    step(
        steps,
        "claude mcp list: somna connected",
        listed,
        any(line.startswith("somna:") and "Connected" in line for line in listed.stdout.splitlines()),
    )

    run(
        [
            str(SOMNA),
            "add",
            "On HTTP 429 from the billing API back off 2 s; retry only idempotent GETs.",
            "--type",
            "lesson",
        ],
        env,
    )
    tools = run(["mcp-inspector", "--cli", str(SOMNA), "serve", "--method", "tools/list"], env)
    names = [t["name"] for t in json.loads(tools.stdout)["tools"]] if tools.returncode == 0 else []
    step(steps, "inspector --cli tools/list", tools, {"search", "write", "propose_edit"} <= set(names))
    steps[-1]["tools"] = names
    search = run(
        [
            "mcp-inspector",
            "--cli",
            str(SOMNA),
            "serve",
            "--method",
            "tools/call",
            "--tool-name",
            "search",
            "--tool-arg",
            "query=billing 429",
        ],
        env,
    )
    hits = (
        json.loads(search.stdout).get("structuredContent", {}).get("hits", [])
        if search.returncode == 0
        else []
    )
    step(
        steps,
        "inspector --cli tools/call search",
        search,
        bool(hits) and "billing" in hits[0]["title"].lower(),
    )

    log = root / "http.log"
    with open(log, "w", encoding="utf-8") as err:
        server = subprocess.Popen(
            [str(SOMNA), "serve", "--http", "--port", "0"],
            stdin=subprocess.DEVNULL,
            env={**env, "SOMNA_LOG_LEVEL": "INFO"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        info_file = home / ".somna" / ".somna" / "http.json"
        deadline = time.monotonic() + 60
        while not info_file.exists() and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.1)
        attached = run(["claude", "mcp", "list"], env)
        served = "Created new transport with session ID" in log.read_text(
            encoding="utf-8"
        )  # it went over HTTP
        step(
            steps,
            "claude mcp list with a shared server running (attach)",
            attached,
            served
            and any(
                line.startswith("somna:") and "Connected" in line for line in attached.stdout.splitlines()
            ),
        )
    finally:
        server.terminate()
        server.wait(timeout=60)

    removed = run([str(SOMNA), "uninstall", "claude-code"], env)
    after = run(["claude", "mcp", "list"], env)
    step(
        steps,
        "somna uninstall claude-code",
        removed,
        removed.returncode == 0 and not any(line.startswith("somna:") for line in after.stdout.splitlines()),
    )
    return {"claude_code": version.stdout.strip(), "steps": steps, "ok": all(s["ok"] for s in steps)}


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Real harness CLIs accept somna ({r['claude_code']})", "", "| step | result |", "|---|---|"]
    lines += [f"| {s['step']} | {'ok' if s['ok'] else 'FAIL'} |" for s in r["steps"]]
    listed = next((s for s in r["steps"] if s["step"].startswith("claude mcp list: somna")), None)
    if listed:
        lines += ["", "`claude mcp list`:", "", "```", listed["output"].strip(), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()
    if shutil.which("npm") is None:
        print("npm is not installed", file=sys.stderr)
        return 2
    if args.keep:
        root = Path(args.keep)
        root.mkdir(parents=True, exist_ok=False)
        report = check(root)
    else:
        with tempfile.TemporaryDirectory(prefix="somna-harness-") as tmp:
            report = check(Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "harness_cli.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = markdown(report)
    (RESULTS / "harness_cli.md").write_text(md, encoding="utf-8")
    print(md)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
