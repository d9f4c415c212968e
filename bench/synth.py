"""Synthetic memories for the search-latency and sleep rows: realistic, varied, deterministic.

Each memory is one *situation* sentence followed by one *lesson* sentence, e.g.

    "When the billing worker gets a 429 from the payments API during the nightly export, back off 2 s and
     retry only idempotent GETs (see docs/http.md)."

Both come from templates filled from word lists by a seeded `random.Random`, so the same `n` and seed
always give the same texts. The situations and lessons are drawn from two pools (SITUATIONS × LESSONS
distinct sentences), and every memory is a distinct (situation, lesson) pair with its own numbers.

Vectors for large stores (`PoolEmbedder`): embedding 100k memories with MiniLM on 2 cores would take about
half an hour, so each pool sentence is embedded once with the real model and a memory's vector is the
normalised sum of its two sentences' vectors (what mean pooling over the concatenation approximates).
Any text not from the pools (every query) is embedded for real, so a measured search always pays for a
real query embedding.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

COMPONENTS = [
    "billing worker",
    "auth service",
    "search indexer",
    "CI pipeline",
    "payments webhook",
    "user importer",
    "nightly export",
    "cache warmer",
    "GraphQL gateway",
    "mobile API",
    "feature-flag client",
    "report builder",
    "email sender",
    "upload handler",
    "rate limiter",
    "schema migrator",
    "audit logger",
    "session store",
    "metrics scraper",
    "PDF renderer",
    "notification queue",
    "tenant resolver",
    "billing reconciler",
    "invoice generator",
    "image resizer",
    "config loader",
    "websocket hub",
    "cron scheduler",
    "docs site build",
    "terraform plan",
    "k8s deploy",
    "Postgres replica",
    "Redis cluster",
    "Kafka consumer",
    "S3 sync job",
    "OAuth callback",
    "CSV parser",
    "vector index",
    "test fixtures",
    "release script",
]
EVENTS = [
    "gets a 429 from {svc}",
    "times out talking to {svc}",
    "runs out of memory",
    "deadlocks on {table}",
    "sees duplicate rows in {table}",
    "fails with a TLS handshake error",
    "returns stale data from {svc}",
    "drops messages after a restart",
    "hits the connection pool limit",
    "logs 'permission denied' on {path}",
    "breaks after upgrading {lib}",
    "is slow on the first request",
    "leaks file descriptors",
    "crashes on a UTF-8 BOM",
    "double-charges on retries",
    "skips rows with NULL {field}",
    "mixes up time zones in {field}",
    "cannot find {path}",
    "exceeds the {n} MB payload limit",
    "loses the lock after {n} s",
]
CONTEXTS = [
    "during the nightly batch",
    "in staging only",
    "right after a deploy",
    "under load tests",
    "when two tenants share a name",
    "on the first run of the day",
    "behind the corporate proxy",
    "on macOS runners",
    "in the EU region",
    "with feature flag {flag} on",
    "for accounts older than {n} days",
    "while a migration is running",
    "when the queue is over {n} items",
    "after the certificate rotation",
]
LESSONS = [
    "back off {n} s and retry only idempotent GETs",
    "set the timeout to {n} s and log the request id",
    "add an index on {table}({field}) before running it",
    "pin {lib} to the previous minor version",
    "run `make {target}` first to regenerate the client",
    "use the read replica only for reports",
    "wrap the write in a transaction with SELECT ... FOR UPDATE",
    "normalise timestamps to UTC at the edge",
    "strip the BOM before parsing",
    "raise the pool size to {n} and close sessions in a finally block",
    "check {path} exists and is owned by the service user",
    "flush the cache key prefix {flag}",
    "page the on-call only after {n} failures in a row",
    "split the batch into chunks of {n}",
    "ask the user before touching {path}; it is generated",
    "the fix is in {path}, keep it",
    "prefer the {lib} client over raw HTTP",
    "verify with `pytest -k {target}` before merging",
    "never retry POSTs to {svc}; they are not idempotent",
    "document the workaround in {path}",
]
SVCS = [
    "the payments API",
    "Stripe",
    "the identity provider",
    "S3",
    "the search cluster",
    "GitHub",
    "the ledger service",
    "the geocoder",
    "Slack",
    "the SMTP relay",
]
TABLES = ["orders", "invoices", "users", "events", "sessions", "audit_log", "line_items", "tenants"]
FIELDS = ["created_at", "tenant_id", "email", "amount_cents", "external_id", "updated_at", "status"]
PATHS = [
    "docs/http.md",
    "config/prod.yaml",
    "/var/run/app.sock",
    "scripts/migrate.sh",
    "src/api/client.py",
    ".github/workflows/ci.yml",
    "infra/main.tf",
    "~/.netrc",
    "deploy/values.yaml",
]
LIBS = ["requests", "SQLAlchemy", "pydantic", "boto3", "celery", "httpx", "psycopg", "redis-py", "openssl"]
FLAGS = ["new-checkout", "fast-path", "v2-search", "beta-export", "strict-auth"]
TARGETS = ["gen", "proto", "schema", "test-integration", "lint", "migrations"]
REASONS = [
    "",
    "",
    "",
    " (it cost us a day in March)",
    " (see the incident review)",
    "; the vendor confirmed it",
    ", otherwise the alert fires twice",
    "; agreed with the team lead",
    " because retries amplify the outage",
    ", as the runbook says",
    "; the old workaround no longer applies",
    " until the upstream fix ships",
    ", which keeps the p95 under {n} ms",
    "; tests in {path} cover it",
    " and note it in the PR",
]
TAGS = ["http", "db", "ci", "deploy", "auth", "perf", "billing", "infra", "testing", "data"]
QUESTIONS = [
    "what do we do when {comp} {event}",
    "how to fix {comp} that {event}",
    "{comp} {event} again",
    "known issue: {event} {ctx}",
    "why does the {comp} fail {ctx}",
    "lesson about {svc} and retries",
    "workaround for {lib} problems in {comp}",
    "{table} {field} bug in {comp}",
]

SITUATIONS = 700
LESSON_POOL = 700


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        svc=rng.choice(SVCS),
        table=rng.choice(TABLES),
        field=rng.choice(FIELDS),
        path=rng.choice(PATHS),
        lib=rng.choice(LIBS),
        flag=rng.choice(FLAGS),
        target=rng.choice(TARGETS),
        n=rng.choice([2, 3, 5, 8, 10, 15, 30, 50, 64, 100, 128, 250, 500, 1000]),
    )


@dataclass
class Corpus:
    situations: list[str]
    lessons: list[str]
    pairs: list[tuple[int, int]]

    def text(self, i: int) -> str:
        s, l_ = self.pairs[i]
        return f"{self.situations[s]}, {self.lessons[l_]}."

    def items(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        stop = len(self.pairs) if stop is None else stop
        return [
            {
                "content": self.text(i),
                "type": ("lesson", "fact", "procedure", "decision")[i % 4],
                "tags": [TAGS[i % len(TAGS)], TAGS[(i * 7 + 3) % len(TAGS)]],
            }
            for i in range(start, stop)
        ]


def corpus(n: int, seed: int = 7) -> Corpus:
    rng = random.Random(seed)
    sits: list[str] = []
    seen: set[str] = set()
    while len(sits) < SITUATIONS:
        when = rng.choice(["When", "If", "Whenever", "After", "Each time"])
        s = f"{when} the {rng.choice(COMPONENTS)} {_fill(rng, rng.choice(EVENTS))} {_fill(rng, rng.choice(CONTEXTS))}"
        if s not in seen:
            seen.add(s)
            sits.append(s)
    lessons: list[str] = []
    while len(lessons) < LESSON_POOL:
        s = _fill(rng, rng.choice(LESSONS)) + _fill(rng, rng.choice(REASONS))
        if s not in seen:
            seen.add(s)
            lessons.append(s)
    total = SITUATIONS * LESSON_POOL
    if n > total:
        raise ValueError(f"at most {total} distinct memories")
    # a fixed permutation of all pairs, so corpus(n) is a prefix of corpus(m) for n < m
    step = 1_000_003 % total  # coprime with total: 490,000 = 2^4·5^4·7^2
    pairs = [((k * step) % total // LESSON_POOL, (k * step) % total % LESSON_POOL) for k in range(n)]
    return Corpus(sits, lessons, pairs)


def queries(n: int, seed: int = 11) -> list[str]:
    """Distinct questions in an agent's words (never pool sentences: they are embedded for real)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        q = rng.choice(QUESTIONS).format(
            comp=rng.choice(COMPONENTS),
            event=_fill(rng, rng.choice(EVENTS)),
            ctx=_fill(rng, rng.choice(CONTEXTS)),
            svc=rng.choice(SVCS),
            lib=rng.choice(LIBS),
            table=rng.choice(TABLES),
            field=rng.choice(FIELDS),
        )
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


class PoolEmbedder:
    """Vectors of corpus memories from their two pool sentences; anything else through the real model."""

    def __init__(self, real: Any, corp: Corpus) -> None:
        self.real = real
        self.name = real.name
        self.dim = real.dim
        self.corp = corp
        sentences = corp.situations + corp.lessons
        vecs = real.embed(sentences)
        self._sit = vecs[: len(corp.situations)]
        self._les = vecs[len(corp.situations) :]
        self._by_text = {corp.text(i): p for i, p in enumerate(corp.pairs)}
        self.real_texts = 0

    @property
    def ready(self) -> bool:
        return True

    def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float] | None] = []
        todo: list[int] = []
        for i, t in enumerate(texts):
            body = t.split("\n", 1)[-1].strip()  # somna embeds "title\nbody\n"; the title is the first line
            pair = self._by_text.get(body)
            if pair is None:
                out.append(None)
                todo.append(i)
                continue
            a, b = self._sit[pair[0]], self._les[pair[1]]
            v = [x + y for x, y in zip(a, b, strict=True)]
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        if todo:
            self.real_texts += len(todo)
            for i, v in zip(todo, self.real.embed([texts[i] for i in todo]), strict=True):
                out[i] = v
        return out  # type: ignore[return-value]
