"""Benchmark: the skills catalog stays within its token budget, and search finds the right skill.

Acceptance (issue 3): with 10, 100 and 1,000 generated skills, the tokens the catalog adds to the server
instructions stay within the skills budget (SOMNA_SKILLS_BUDGET, default 600); in the 1,000 case search
finds the right skill. Reports tokens (estimated as characters / 4, as somna counts them), the tier the
instructions use (full catalog, names only, or the count and a pointer to search_skills), the size of the
load_skill definition (its enum is part of what every session pays), and recall@1/@5 and MRR of
`search_skills` for two query sets:

- direct: "how do I <verb synonym> the <object> in <tech>", the object's own words;
- paraphrase: the object named by a synonym ("website" for "web app"), so words alone often miss.

    .venv/bin/python bench/skills_catalog.py                      # words, hash vectors, and MiniLM
    .venv/bin/python bench/skills_catalog.py --embedders none,hash  # no model: a few seconds

Each skill is a real folder with a SKILL.md in a real store; the catalog is built the way `somna serve`
builds it (somna.skills.Catalog), and the instructions by server.compose_instructions. Writes
bench/results/skills_catalog.json and .md. Exit status 0 when every size is within budget and recall@5
of the 1,000 case (direct queries, words alone) is at least 0.9.

`generate(root, n)` is importable (with bench/ on sys.path) for tests: it writes n skills and returns
[(name, direct query, paraphrase query)].
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VERBS = [
    ("deploy", "ship"),
    ("debug", "troubleshoot"),
    ("migrate", "move"),
    ("benchmark", "measure"),
    ("upgrade", "update"),
    ("configure", "set up"),
    ("test", "verify"),
    ("profile", "speed up"),
    ("secure", "harden"),
    ("monitor", "watch"),
    ("back up", "snapshot"),
    ("scale", "grow"),
]
OBJECTS = [
    ("web app", "website"),
    ("database schema", "tables"),
    ("message queue", "broker"),
    ("cache layer", "memoization"),
    ("auth service", "login"),
    ("CI pipeline", "build workflow"),
    ("search index", "full-text lookup"),
    ("mobile build", "phone release"),
    ("data pipeline", "ETL"),
    ("REST API", "HTTP endpoints"),
    ("background jobs", "workers"),
    ("file uploads", "attachments"),
    ("email delivery", "mail sending"),
    ("payment checkout", "billing flow"),
    ("feature flags", "toggles"),
    ("log shipping", "log forwarding"),
    ("metrics dashboard", "charts"),
    ("TLS certificates", "HTTPS certs"),
    ("DNS records", "domain names"),
    ("container images", "docker images"),
    ("secrets vault", "credentials"),
    ("rate limiter", "throttling"),
    ("websocket server", "realtime push"),
    ("cron schedules", "timers"),
    ("GraphQL gateway", "graph queries"),
    ("load balancer", "traffic spreading"),
    ("object storage", "blob bucket"),
    ("translation files", "i18n strings"),
    ("PDF reports", "printouts"),
    ("image thumbnails", "resized pictures"),
    ("session store", "user sessions"),
    ("audit trail", "change history"),
    ("config files", "settings"),
    ("unit tests", "specs"),
    ("dependency lockfile", "pinned packages"),
    ("ORM models", "entities"),
    ("webhooks", "callbacks"),
    ("access control", "permissions"),
    ("backup restore", "disaster recovery"),
    ("notification service", "alerts"),
]
TECHS = [
    "Django",
    "Rails",
    "Kubernetes",
    "Terraform",
    "PostgreSQL",
    "Redis",
    "Kafka",
    "React",
    "Flutter",
    "Airflow",
    "Spark",
    "GitHub Actions",
    "Nginx",
    "Elasticsearch",
    "FastAPI",
    "Spring Boot",
    "Next.js",
    "Go",
    "Rust",
    "Docker Compose",
    "AWS Lambda",
    "Cloud Run",
    "Azure Functions",
    "SQLite",
    "MongoDB",
]


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def generate(root: Path, n: int) -> list[tuple[str, str, str]]:
    """Write n skills under root (each a unique object x tech); return (name, direct, paraphrase) queries."""
    out = []
    for i in range(n):
        obj, obj_syn = OBJECTS[i % len(OBJECTS)]
        tech = TECHS[(i // len(OBJECTS)) % len(TECHS)]
        verb, verb_syn = VERBS[(i * 7) % len(VERBS)]
        name = _slug(f"{verb} {obj} {tech}")[:64].rstrip("-")
        desc = (
            f"{verb.capitalize()} the {obj} of a {tech} project: the steps, commands, checks and rollback. "
            f"Use when asked to {verb} the {obj} on {tech}, or when it breaks."
        )
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "SKILL.md").write_text(
            f"---\nname: {name}\ndescription: {json.dumps(desc)}\n---\n"
            f"# {verb} the {obj} ({tech})\n\n1. Read the config.\n2. Run the checks.\n",
            encoding="utf-8",
        )
        out.append((name, f"how do I {verb_syn} the {obj} in {tech}", f"{verb_syn} our {tech} {obj_syn}"))
    return out


def measure(sizes: list[int], embedders: list[str], budget: int) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from somna.embeddings import make_embedder
    from somna.scopes import Memory
    from somna.server import compose_instructions
    from somna.skills import Catalog, tokens
    from somna.store import Store

    results: dict[str, Any] = {
        "budget": budget,
        "sizes": [],
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
    }
    models = {}
    for spec in embedders:
        if spec == "none":
            models[spec] = None
            continue
        emb = make_embedder(spec)
        if hasattr(emb, "wait") and not emb.wait():
            print(f"embedder {spec} unavailable: {getattr(emb, 'error', '?')}; skipped", file=sys.stderr)
            continue
        models[spec] = emb
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            store = Store.init(Path(tmp) / f"store-{n}")
            queries = generate(store.root / "skills", n)
            memory = Memory({"store": store})
            t0 = time.perf_counter()
            catalog = Catalog.for_stores(memory.stores, budget=budget)
            scan_ms = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            catalog.refresh()  # nothing changed: the poll's cost
            poll_ms = (time.perf_counter() - t0) * 1000
            base = compose_instructions(memory, 1500)
            full = compose_instructions(memory, 1500, catalog.instructions())
            enum = catalog.enum()
            row: dict[str, Any] = {
                "skills": n,
                "tier": catalog.tier(),
                "catalog_tokens": tokens(full) - tokens(base),
                "within_budget": tokens(full) - tokens(base) <= budget,
                "enum_tokens": tokens(json.dumps(enum)) if enum else 0,
                "instructions_chars": len(full),
                "scan_ms": round(scan_ms, 1),
                "poll_ms": round(poll_ms, 2),
                "search": {},
            }
            for spec, emb in models.items():
                catalog.embedder = emb
                t0 = time.perf_counter()
                catalog.embed()  # what the server does in the background once the model is ready
                row[f"embed_ms_{spec}"] = round((time.perf_counter() - t0) * 1000, 1)
                for kind, col in (("direct", 1), ("paraphrase", 2)):
                    ranks, times = [], []
                    for q in queries:
                        t0 = time.perf_counter()
                        hits = [h["name"] for h in catalog.search(q[col], limit=10)["skills"]]
                        times.append((time.perf_counter() - t0) * 1000)
                        ranks.append(hits.index(q[0]) + 1 if q[0] in hits else 0)
                    times.sort()
                    row["search"][f"{spec}/{kind}"] = {
                        "mode": catalog.search(queries[0][col])["mode"],
                        "queries": len(ranks),
                        "recall@1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
                        "recall@5": round(sum(0 < r <= 5 for r in ranks) / len(ranks), 3),
                        "mrr": round(sum(1 / r for r in ranks if r) / len(ranks), 3),
                        "p50_ms": round(times[len(times) // 2], 2),
                        "p95_ms": round(times[int(len(times) * 0.95)], 2),
                    }
            store.close()
            results["sizes"].append(row)
    last = results["sizes"][-1]
    words = last["search"].get("none/direct", {})
    results["pass"] = all(r["within_budget"] for r in results["sizes"]) and words.get("recall@5", 0) >= 0.9
    return results


def table(res: dict[str, Any]) -> str:
    lines = [
        f"Skills budget: {res['budget']} tokens (characters / 4).",
        "",
        "| skills | instructions carry | catalog tokens | within budget | enum tokens | scan ms | poll ms |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in res["sizes"]:
        lines.append(
            f"| {r['skills']} | {r['tier']} | {r['catalog_tokens']} | {r['within_budget']} | "
            f"{r['enum_tokens']} | {r['scan_ms']} | {r['poll_ms']} |"
        )
    lines += [
        "",
        "| skills | embedder/queries | mode | recall@1 | recall@5 | MRR | p50 ms | p95 ms | embed all ms |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in res["sizes"]:
        for key, s in r["search"].items():
            lines.append(
                f"| {r['skills']} | {key} | {s['mode']} | {s['recall@1']} | {s['recall@5']} | {s['mrr']} | "
                f"{s['p50_ms']} | {s['p95_ms']} | {r.get('embed_ms_' + key.split('/')[0], '')} |"
            )
    lines += [
        "",
        "catalog tokens: what the skills add to the server instructions; enum tokens: the names in "
        "load_skill's schema (present while the names fit the budget); scan: building the catalog "
        "(before the handshake); poll: one unchanged refresh; embed all: the one-time background "
        "embedding of every description (search latency is measured after it).",
    ]
    lines += ["", f"pass: {res['pass']}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--embedders", default="none,hash,minilm", help="none = words only")
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--name", default="skills_catalog")
    args = ap.parse_args()
    res = measure([int(s) for s in args.sizes.split(",")], args.embedders.split(","), args.budget)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    md = table(res)
    (out / f"{args.name}.md").write_text(md, encoding="utf-8")
    print(md)
    return 0 if res["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
