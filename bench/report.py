"""The Markdown table and the plot of bench/run.py's results (a dict; see run.py for its shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _g(d: Any, *path: Any, default: Any = None) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _f(x: Any, nd: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _mark(ok: bool | None) -> str:
    return "—" if ok is None else ("**pass**" if ok else "**miss**")


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    hs = r.get("handshake") or {}
    if hs:
        out.append(
            (
                "handshake ≤ 1.2× a bare one-tool MCPServer (medians, interleaved)",
                f"{hs['ratio']:.2f}× ({hs['arms']['somna']['median_ms']:.0f} vs {hs['arms']['bare']['median_ms']:.0f} ms)"
                + ("" if hs["heavy_check"]["ok"] else "; heavy module before the answer!"),
                hs["ratio"] <= 1.2 and hs["heavy_check"]["ok"],
            )
        )
    for n, limit in (("10000", 25.0), ("100000", 40.0)):
        mcp = _g(r, "sessions", "somna", n, "search", "p50_ms")
        inp = _g(r, "in_process", "somna", "sizes", n, "in_process", "p50_ms")
        if mcp is None and inp is None:
            continue
        worst = max(x for x in (mcp, inp) if x is not None)
        out.append(
            (
                f"search p50 ≤ {limit:.0f} ms at {int(n) // 1000}k memories, query embedding included",
                f"{_f(mcp)} ms through MCP, {_f(inp)} ms in-process",
                worst <= limit,
            )
        )
    ratios = []
    for n in ("1000", "10000", "100000"):
        for label, v in (
            ("MCP", _g(r, "sessions", "somna", n, "search", "p95_over_p50")),
            ("in-process", _g(r, "in_process", "somna", "sizes", n, "in_process", "p95_over_p50")),
        ):
            if v is not None:
                ratios.append((f"{int(n) // 1000}k {label}", v))
    if ratios:
        out.append(
            (
                "search p95 ≤ 2× p50",
                ", ".join(f"{k} {v:.2f}×" for k, v in ratios),
                all(v <= 2.0 for _, v in ratios),
            )
        )
    bi = _g(r, "bulk_import", "somna", "per_s")
    if bi is not None:
        out.append(("bulk import ≥ 200 memories/s with embeddings", f"{bi:.0f}/s", bi >= 200))
    first = next(iter(_g(r, "sessions", "somna", default={}) or {}), None)
    tt = _g(r, "sessions", "somna", first, "tool_model_tokens", "cl100k") if first else None
    if tt is not None:
        full = _g(r, "sessions", "somna", first, "tool_tokens", "cl100k")
        each = _g(r, "sessions", "somna", first, "tool_model_tokens_each", default={}) or {}
        top = ", ".join(f"{k} {v}" for k, v in sorted(each.items(), key=lambda kv: -(kv[1] or 0))[:4])
        out.append(
            (
                "all tool definitions ≤ 2,000 tokens",
                f"{tt:,} tokens (cl100k) of name + description + input schema for {len(each)} tools; "
                f"{full:,} for the whole tools/list JSON; largest: {top}",
                tt <= 2000,
            )
        )
        rss = _g(r, "sessions", "somna", first, "rss_after_initialize_mb")
        torch = _g(r, "sessions", "somna", first, "torch_loaded_at_initialize")
        out.append(
            (
                "server RSS ≤ 150 MB before the model loads",
                f"{rss:.0f} MB (torch mapped: {torch})",
                rss <= 150 and not torch,
            )
        )
    sh = r.get("shared")
    if sh:
        out.append(
            (
                "5 clients through the shared server ≤ 1.5× one server",
                f"{sh['ratio_attached_to_one']:.3f}× with 5 attached `somna serve` relays "
                f"({sh['shared_plus_5_attached_mb']:.0f} vs {sh['one_stdio_server_mb']:.0f} MB); "
                f"{sh['ratio_http_to_one']:.2f}× with 5 HTTP clients",
                sh["ratio_attached_to_one"] <= 1.5,
            )
        )
    cmp_rows = comparisons(r)
    if cmp_rows:
        behind = [c[0] for c in cmp_rows if c[4] is False]
        out.append(
            (
                "ahead of the peer on every comparable row, quality no worse",
                f"ahead on {sum(1 for c in cmp_rows if c[4])} of {len(cmp_rows)}"
                + (f"; behind: {', '.join(behind)}" if behind else ""),
                not behind,
            )
        )
    elif r.get("peer_unavailable"):
        out.append(
            ("ahead of the peer on every comparable row", f"peer not run: {r['peer_unavailable']}", None)
        )
    return out


def comparisons(r: dict[str, Any]) -> list[tuple[str, Any, Any, str, bool | None]]:
    """(row, somna, peer, somna/peer, somna ahead?) for every row both have."""
    rows: list[tuple[str, Any, Any, str, bool | None]] = []

    def add(name: str, s: Any, p: Any, lower_better: bool, unit: str = "") -> None:
        if s is None or p is None or not p:
            return
        ratio = s / p
        rows.append(
            (
                name,
                f"{_f(s)}{unit}",
                f"{_f(p)}{unit}",
                f"{ratio:.2f}×",
                ratio < 1 if lower_better else ratio > 1,
            )
        )

    add(
        "handshake median",
        _g(r, "handshake", "arms", "somna", "median_ms"),
        _g(r, "handshake", "arms", "peer", "median_ms"),
        True,
        " ms",
    )
    first = "1000"
    add(
        "tool definitions (cl100k tokens, as a harness shows them)",
        _g(r, "sessions", "somna", first, "tool_model_tokens", "cl100k"),
        _g(r, "sessions", "peer", first, "tool_model_tokens", "cl100k"),
        True,
    )
    add(
        "RSS after initialize",
        _g(r, "sessions", "somna", first, "rss_after_initialize_mb"),
        _g(r, "sessions", "peer", first, "rss_after_initialize_mb"),
        True,
        " MB",
    )
    add(
        "RSS with the model loaded",
        _g(r, "sessions", "somna", first, "rss_model_loaded_mb"),
        _g(r, "sessions", "peer", first, "rss_model_loaded_mb"),
        True,
        " MB",
    )
    for n in ("1000", "10000"):
        k = f"{int(n) // 1000}k"
        add(
            f"search p50 through MCP, {k}",
            _g(r, "sessions", "somna", n, "search", "p50_ms"),
            _g(r, "sessions", "peer", n, "search", "p50_ms"),
            True,
            " ms",
        )
        add(
            f"search p95 through MCP, {k}",
            _g(r, "sessions", "somna", n, "search", "p95_ms"),
            _g(r, "sessions", "peer", n, "search", "p95_ms"),
            True,
            " ms",
        )
        add(
            f"search p50 in-process, {k}",
            _g(r, "in_process", "somna", "sizes", n, "in_process", "p50_ms"),
            _g(r, "in_process", "peer", n, "p50_ms"),
            True,
            " ms",
        )
    add(
        "bulk import (memories/s)",
        _g(r, "bulk_import", "somna", "per_s"),
        _g(r, "bulk_import", "peer", "per_s"),
        False,
    )
    add(
        "writes/s through MCP",
        _g(r, "sessions", "somna", first, "writes", "per_s"),
        _g(r, "sessions", "peer", first, "writes", "per_s"),
        False,
    )
    sq = _g(r, "quality", "somna", "metrics", "hybrid", "all")
    pq = _g(r, "quality", "peer", "metrics")
    if sq and pq:
        best = max(pq, key=lambda m: pq[m]["all"]["mrr"])
        for key in ("recall@5", "mrr"):
            s, p = sq[key], pq[best]["all"][key]
            rows.append(
                (
                    f"letta-facts {key} (somna hybrid vs peer {best})",
                    f"{s:.3f}",
                    f"{p:.3f}",
                    f"{s / p:.3f}×",
                    s >= p,
                )
            )
    return rows


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"# somna benchmarks{' (quick)' if r.get('quick') else ''}",
        "",
        f"Run {r['date']} on {m['platform']}, {m['cpu']}, {m['cpus']} CPUs, {m['memory']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + ".",
        "Reproduce: `scripts/bench.sh` (see bench/README.md). Load average (1 min) before/after each step: "
        + "; ".join(f"{k} {v['before']}/{v['after']} ({v['seconds']:.0f} s)" for k, v in r["load"].items())
        + ".",
        "The machine was shared with other work during the run: compare the side-by-side ratios first.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {t} | {v} | {_mark(ok)} |" for t, v, ok in targets(r)]
    cmp_rows = comparisons(r)
    lines += ["", "## somna vs the peer (mcp-memory-service, same run)", ""]
    if cmp_rows:
        lines += ["| row | somna | peer | somna/peer | somna ahead |", "| --- | ---: | ---: | ---: | --- |"]
        lines += [f"| {a} | {b} | {c} | {d} | {'yes' if e else 'no'} |" for a, b, c, d, e in cmp_rows]
    else:
        lines.append(f"Peer not measured: {r.get('peer_unavailable', 'see errors')}.")
    hs = r.get("handshake")
    if hs:
        lines += [
            "",
            "## Handshake: spawn → initialize result",
            "",
            "| server | median ms | p95 ms | min ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {k} | {v['median_ms']:.0f} | {v['p95_ms']:.0f} | {v['min_ms']:.0f} |"
            for k, v in hs["arms"].items()
        ]
        lines.append(
            f"\n{hs['runs']} interleaved rounds (random order within each); heavy modules before the "
            f"answer: {'none' if hs['heavy_check']['ok'] else hs['heavy_check']}."
        )
    lines += [
        "",
        "## Search latency (warm, hybrid, limit 8, a distinct query each call, its embedding included)",
        "",
        "| memories | in-process p50 / p95 ms | through MCP p50 / p95 ms | in-process p50 parts (ms) | "
        "peer in-process p50 / p95 | peer MCP p50 / p95 | store vectors |",
        "| ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for n, row in (_g(r, "in_process", "somna", "sizes", default={}) or {}).items():
        ip = row["in_process"]
        mc = _g(r, "sessions", "somna", n, "search", default={}) or {}
        pi = _g(r, "in_process", "peer", n, default={}) or {}
        pm = _g(r, "sessions", "peer", n, "search", default={}) or {}
        parts = ", ".join(f"{k} {v}" for k, v in ip.get("breakdown_p50_ms", {}).items())
        lines.append(
            f"| {int(n):,} | {_f(ip['p50_ms'])} / {_f(ip['p95_ms'])} | {_f(mc.get('p50_ms'))} / "
            f"{_f(mc.get('p95_ms'))} | {parts} | {_f(pi.get('p50_ms'))} / {_f(pi.get('p95_ms'))} | "
            f"{_f(pm.get('p50_ms'))} / {_f(pm.get('p95_ms'))} | {row['store'].get('vectors', '')} |"
        )
    s = _g(r, "sessions", "somna", "1000", default={}) or {}
    p = _g(r, "sessions", "peer", "1000", default={}) or {}
    if s:
        lines += ["", "## One server session (1k store)", "", "| | somna | peer |", "| --- | ---: | ---: |"]
        for label, key in (
            ("tools", None),
            ("tool definitions as a harness shows them: cl100k tokens", ("tool_model_tokens", "cl100k")),
            ("whole tools/list result: cl100k tokens", ("tool_tokens", "cl100k")),
            ("whole tools/list result: characters", ("tool_tokens", "chars")),
            ("server instructions at the default budget: cl100k tokens", ("instructions_tokens", "cl100k")),
            ("RSS after initialize (MB)", ("rss_after_initialize_mb",)),
            ("torch mapped at initialize", ("torch_loaded_at_initialize",)),
            ("RSS with the model loaded (MB)", ("rss_model_loaded_mb",)),
            ("search ready after initialize (s)", ("model_ready_s",)),
            ("writes/s through MCP", ("writes", "per_s")),
            ("write p50 / p95 (ms)", None),
        ):
            if label == "tools":
                lines.append(
                    f"| tools | {len(s.get('tools', []))} | {len(p.get('tools', [])) if p else '—'} |"
                )
            elif key is None:
                lines.append(
                    f"| {label} | {_f(_g(s, 'writes', 'p50_ms'))} / {_f(_g(s, 'writes', 'p95_ms'))} | "
                    f"{_f(_g(p, 'writes', 'p50_ms'))} / {_f(_g(p, 'writes', 'p95_ms'))} |"
                )
            else:
                lines.append(f"| {label} | {_f(_g(s, *key))} | {_f(_g(p, *key))} |")
    bi = r.get("bulk_import")
    if bi:
        lines += [
            "",
            f"Bulk import of {bi['somna']['n']:,} synthetic memories embedded for real: somna "
            f"{bi['somna']['per_s']}/s (write_many: files, one git commit, index); peer "
            f"{_g(bi, 'peer', 'per_s', default='—')}/s (store_batch).",
        ]
    q = r.get("quality")
    if q:
        lines += [
            "",
            "## Retrieval quality: letta-facts (2,000 facts pooled, 1,100 questions, top 10)",
            "",
            "| system / mode | recall@1 | recall@5 | recall@10 | MRR | p50 ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for who in ("somna", "peer"):
            for mode, mm in (_g(q, who, "metrics", default={}) or {}).items():
                a = mm["all"]
                lat = _g(q, who, "latency_ms", mode)
                lat = lat.get("p50") if isinstance(lat, dict) else lat
                lines.append(
                    f"| {who} {mode} | {a['recall@1']:.3f} | {a['recall@5']:.3f} | {a['recall@10']:.3f} | "
                    f"{a['mrr']:.3f} | {_f(lat)} |"
                )
    sh = r.get("shared")
    if sh:
        lines += [
            "",
            "## Memory of 5 clients",
            "",
            f"One stdio server {sh['one_stdio_server_mb']:.0f} MB; five stdio servers {sh['five_stdio_servers_mb']:.0f} MB; "
            f"one shared `serve --http` + 5 attached relays {sh['shared_plus_5_attached_mb']:.0f} MB "
            f"({sh['per_proxy_mb']:.0f} MB a relay); the shared server with 5 HTTP clients "
            f"{sh['shared_with_5_http_clients_mb']:.0f} MB.",
        ]
    sl = r.get("sleep")
    if sl:
        lines += [
            "",
            "## Sleep cycle at 10k memories",
            "",
            f"{sl['seconds']} s for one full cycle; LLM: {sl['llm']}.",
        ]
    if r["errors"]:
        lines += ["", "## Steps that failed", ""] + [f"- {k}: {v[:500]}" for k, v in r["errors"].items()]
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    series = {
        "somna in-process": {
            n: row["in_process"]
            for n, row in (_g(r, "in_process", "somna", "sizes", default={}) or {}).items()
        },
        "somna through MCP": {
            n: v["search"] for n, v in (_g(r, "sessions", "somna", default={}) or {}).items() if "search" in v
        },
        "peer in-process": _g(r, "in_process", "peer", default={}) or {},
        "peer through MCP": {
            n: v["search"] for n, v in (_g(r, "sessions", "peer", default={}) or {}).items() if "search" in v
        },
    }
    for (label, pts), style in zip(series.items(), ("o-", "s-", "o--", "s--"), strict=True):
        if not pts:
            continue
        xs = sorted(pts, key=int)
        ax.plot([int(x) for x in xs], [pts[x]["p50_ms"] for x in xs], style, label=f"{label} p50")
        ax.fill_between(
            [int(x) for x in xs], [pts[x]["p50_ms"] for x in xs], [pts[x]["p95_ms"] for x in xs], alpha=0.12
        )
    ax.axhline(25, color="grey", lw=0.8, ls=":")
    ax.axhline(40, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memories in the store")
    ax.set_ylabel("search latency ms (p50; band up to p95)")
    ax.set_title(f"Warm search, query embedding included — {r['date'][:10]}, {r['machine']['cpus']} CPUs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
