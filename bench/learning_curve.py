"""Benchmark: the learning curve of issue 14 (point 4). Does memory get better while agents sleep?

    .venv/bin/python bench/learning_curve.py [--streams coding,letta,lme] [--quick]

Replays streams of sessions in time order and compares three policies on the same stream, each in its own
fresh store (a temporary directory):

  append-only   the sessions are written and nothing else happens;
  sleep         somna's deterministic cycle after each session: `Cycle(store).run()` (gate on, as by default);
  sleep+model   the same with the LLM passes: `Cycle(store, extra_passes=llm_passes(store)).run()`, the store's
                `[llm]` pointing at a STAND-IN: a small OpenAI-compatible HTTP server on 127.0.0.1 started
                by this script, which answers by fixed rules written here (see StandIn). It is not a model.

Streams:

  coding  bench/coding_memories (162 hand-labelled coding-agent memories, 40 sessions by their `t`; 25 updates,
          112 probes; see its README);
  letta   ../shared/data/letta-facts, rows 150-154 (the first five held-out rows: 50 facts): sessions 1-5
          write one row's facts each, sessions 6-10 the contradicting facts of one row each (quotes stripped);
  lme     ../shared/data/longmemeval-s, knowledge-update questions chosen by a fixed rule (LME_RULE): each
          question's haystack in its own store, sessions in date order, user turns only (each turn one
          memory, its first line the session date as in bench/longmemeval.py).

After each session, per policy:

  rank-1 current value  for each update planted so far (its newer memory written), the top hit of a default
                        search for its question holds the newer value and not the older one (the older value
                        may appear only where the newer memory itself mentions it, as in "raised from 30 to 45");
  details found         each planted detail (a probe: a query and an expected string) is in the text of an
                        active memory among the top 5 of a default search for the query;
  active tokens         the tokens an agent would read of every active memory: (len(text) + 3) // 4, somna's
                        own estimate (somna.skills.tokens); the text is the body, after the title when the
                        body does not open with it.

Writes bench/results/learning_curve.{json,md} (`--out` picks another name) and docs/learning_curve.png.
Exit status 0 when, on every stream run, both sleep policies end at rank-1 accuracy and active tokens no worse
than append-only with no detail lost (the issue's claim), with at least one of the two strictly better.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# litellm's own bookkeeping warns (pydantic serializer mismatches) on the stand-in's ordinary answers
warnings.filterwarnings("ignore", message="Pydantic serializer warnings")

from somna import notes  # noqa: E402
from somna.embeddings import make_embedder  # noqa: E402
from somna.skills import tokens as somna_tokens  # noqa: E402
from somna.sleep.cycle import Cycle  # noqa: E402
from somna.sleep.llm import llm_passes  # noqa: E402
from somna.store import Store  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CODING = HERE / "coding_memories"
SHARED = ROOT.parent / "shared" / "data"
LETTA = SHARED / "letta-facts" / "letta_bench_gen_200.jsonl"
LME = SHARED / "longmemeval-s" / "dev.json.gz"
TOP = 5
AUTHOR = "claude-code"
POLICIES = ("append-only", "sleep", "sleep+model")
KEY_ENV = "SOMNA_BENCH_STANDIN_KEY"
LETTA_ROWS = (150, 155)  # the first five held-out rows: nothing in somna was tuned on them


# ---------------------------------------------------------------------------------------------------------
# streams


@dataclass
class Update:
    question: str
    new: str  # the newer value, verbatim in the newer memory
    old: str  # the older value, verbatim in the older memory
    new_text: str  # the newer memory's text: the older value may appear there ("raised from 30 to 45")
    t: int  # the session that writes the newer memory


@dataclass
class Probe:
    query: str
    expect: str
    t: int  # planted in this session
    until: int | None = None  # replaced by a newer probe from this session on (the value was updated)
    kind: str = ""


@dataclass
class Track:
    """One store's worth of sessions: sessions[s - 1] is session s, a list of {content, type, tags}."""

    name: str
    sessions: list[list[dict[str, Any]]]
    updates: list[Update]
    probes: list[Probe]


@dataclass
class Stream:
    name: str
    about: str
    tracks: list[Track]

    @property
    def length(self) -> int:
        return max(len(t.sessions) for t in self.tracks)


def coding_stream(quick: bool) -> Stream:
    corpus = [json.loads(x) for x in (CODING / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if x]
    labels = json.loads((CODING / "labels.json").read_text(encoding="utf-8"))
    by_id = {m["id"]: m for m in corpus}
    last = 14 if quick else max(int(m["t"]) for m in corpus)
    sessions: list[list[dict[str, Any]]] = [[] for _ in range(last)]
    for m in corpus:
        if int(m["t"]) <= last:
            sessions[int(m["t"]) - 1].append({"content": m["content"], "type": m["type"], "tags": m["tags"]})
    question = {p["current_for"]: p for p in labels["probes"] if p["kind"] == "update"}
    updates = []
    for u in labels["updates"]:
        old_text, new_text = by_id[u["old"]]["content"], by_id[u["new"]]["content"]
        t = int(by_id[u["new"]]["t"])
        if t <= last:
            p = question[u["new"]]
            updates.append(Update(p["query"], p["expect"], old_value(u["old_value"], old_text), new_text, t))
    probes = [
        Probe(p["query"], p["expect"], int(by_id[p["current_for"]]["t"]), kind=p["kind"])
        for p in labels["probes"]
        if int(by_id[p["current_for"]]["t"]) <= last
    ]
    return Stream(
        "coding",
        f"bench/coding_memories: {sum(map(len, sessions))} memories in {last} sessions, "
        f"{len(updates)} updates, {len(probes)} probes (labels.json)",
        [Track("coding", sessions, updates, probes)],
    )


def old_value(value: str, text: str) -> str:
    """The labelled older value as it is written in the older memory: the label itself, or else its longest
    piece (split on spaces, brackets stripped) that the memory contains ("86400 (24h)" -> "86400")."""
    if value in text:
        return value
    pieces = [p.strip("()") for p in value.split()]
    found = [p for p in pieces if len(p) > 1 and p in text]
    return max(found, key=len) if found else value


def clean(fact: str) -> str:
    fact = fact.strip()
    while len(fact) > 1 and fact[0] == fact[-1] and fact[0] in "\"'":
        fact = fact[1:-1].strip()
    return fact


def letta_stream(quick: bool) -> Stream:
    rows = [json.loads(x) for x in LETTA.read_text(encoding="utf-8").splitlines() if x.strip()]
    lo, hi = LETTA_ROWS
    if quick:
        hi = lo + 2
    picked = rows[lo:hi]
    n = len(picked)
    sessions: list[list[dict[str, Any]]] = [[] for _ in range(2 * n)]
    updates: list[Update] = []
    probes: list[Probe] = []
    for k, r in enumerate(picked):
        t_fact, t_new = k + 1, n + k + 1
        sessions[t_fact - 1] = [{"content": f, "type": "fact", "tags": []} for f in r["facts"]]
        touched: set[int] = set()
        for q, sup, con in zip(
            r["question"], r["supporting_fact_indices"], r["contradicting_facts"], strict=True
        ):
            c = clean(con)
            olds = [r["facts"][i] for i in sup]
            if c in olds:  # the "contradicting" fact is one of its own supporting facts: no update
                continue
            touched.update(sup)
            sessions[t_new - 1].append({"content": c, "type": "fact", "tags": []})
            updates.append(Update(q, c, olds[0], c, t_new))
            probes.append(Probe(q, olds[0], t_fact, until=t_new, kind="question (older fact)"))
            probes.append(Probe(q, c, t_new, kind="question (newer fact)"))
        for i, f in enumerate(r["facts"]):
            if i not in touched:  # a fact no update touches must stay findable: asked with its own words
                probes.append(Probe(f, f, t_fact, kind="untouched fact"))
    return Stream(
        "letta",
        f"letta-facts rows {lo}-{hi - 1}: {10 * n} facts in sessions 1-{n}, their {len(updates)} contradicting "
        f"facts in sessions {n + 1}-{2 * n}; {len(probes)} probes",
        [Track("letta", sessions, updates, probes)],
    )


# The LongMemEval questions: non-abstention knowledge-update questions that ask for the current value (not
# "previous"/"before"), whose two answer sessions each hold exactly one `has_answer` user turn, and whose older
# and newer turns each state the value in words (checked by hand: 5c40ec5b, 69fee5aa and b01defab pass the rest
# of the rule but one of their turns states no value); the first N by question id. The values are written here
# by hand, verbatim from those turns.
LME_RULE = (
    "knowledge-update, not _abs, asking for the current value, two answer sessions with one has_answer user "
    "turn each, both turns stating the value; the first N by question id"
)
LME_VALUES: dict[str, tuple[str, str] | None] = {
    "06db6396": ("completed 4 projects", "5th project"),
    "0f05491a": ("125 stars", "120 stars"),
    "2698e78f": ("every two weeks", "every week"),
    "59524333": ("7:00 pm", "6:00 pm"),
    "5c40ec5b": None,  # the older turn: "the music festival where I met Alex", no count
    "618f13b2": ("four times already", "six times now"),
    "69fee5aa": None,  # the newer turn: "just added a new coin", no total
    "6aeb4375": ("three different", "four different"),
    "7401057b": ("single free night", "two free night"),
    "945e3d21": ("twice a week", "three times a week"),
    "affe2881": ("27 different species", "count to 32"),
    "b01defab": None,  # "meaning to get back to" / "recently finished": no value to compare
    "ce6d2d27": ("on Thursday", "on Fridays"),
    "dad224aa": ("8:30 am", "7:30 am"),
    "e493bb7c": ("living room sofa", "above my bed"),
    "e61a7584": ("about 6 months", "about 9 months"),
}


def lme_pick(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in sorted(records, key=lambda r: r["question_id"]):
        q = r["question"].lower()
        if r["question_type"] != "knowledge-update" or r["question_id"].endswith("_abs"):
            continue
        if "previous" in q or "before" in q or len(r["answer_session_ids"]) != 2:
            continue
        ok = True
        for sid in r["answer_session_ids"]:
            turns = r["haystack_sessions"][r["haystack_session_ids"].index(sid)]
            gold = [t for t in turns if t.get("has_answer")]
            ok &= len(gold) == 1 and gold[0]["role"] == "user"
        if ok:
            out.append(r)
    return out


def lme_stream(quick: bool, count: int) -> Stream:
    with gzip.open(LME, "rt", encoding="utf-8") as fh:
        records = json.load(fh)
    picked = []
    for r in lme_pick(records):
        if r["question_id"] not in LME_VALUES:
            raise SystemExit(
                f"longmemeval {r['question_id']}: not in LME_VALUES; read its two turns and add it"
            )
        if LME_VALUES[r["question_id"]] is not None:
            picked.append(r)
    picked = picked[: (2 if quick else count)]
    tracks = []
    for r in picked:
        qid = r["question_id"]
        old, new = LME_VALUES[qid] or ("", "")
        order = sorted(range(len(r["haystack_sessions"])), key=lambda i: r["haystack_dates"][i])
        sessions: list[list[dict[str, Any]]] = []
        gold_t: dict[str, int] = {}
        for s, i in enumerate(order, 1):
            sid = r["haystack_session_ids"][i]
            if sid in r["answer_session_ids"]:
                gold_t[sid] = s
            sessions.append(
                [
                    {
                        "content": f"{r['haystack_dates'][i]} · user\n{t['content'].strip()}",
                        "type": "note",
                        "tags": [],
                    }
                    for t in r["haystack_sessions"][i]
                    if t["role"] == "user" and t["content"].strip()
                ]
            )
        t_old, t_new = sorted(gold_t.values())
        new_turn = next(
            t["content"]
            for t in r["haystack_sessions"][order[t_new - 1]]
            if t.get("has_answer") and t["role"] == "user"
        )
        for s, v in ((t_old, old), (t_new, new)):
            if not any(v in m["content"] for m in sessions[s - 1]):
                raise SystemExit(f"longmemeval {qid}: {v!r} is not in its answer session {s}")
        tracks.append(
            Track(
                qid,
                sessions,
                [Update(r["question"], new, old, new_turn, t_new)],
                [
                    Probe(r["question"], old, t_old, until=t_new, kind="older value"),
                    Probe(r["question"], new, t_new, kind="newer value"),
                ],
            )
        )
    turns = sum(len(s) for t in tracks for s in t.sessions)
    return Stream(
        "lme",
        f"longmemeval-s: {len(tracks)} knowledge-update questions ({LME_RULE}), each its own store; "
        f"{turns} user turns in {sum(len(t.sessions) for t in tracks)} sessions",
        tracks,
    )


# ---------------------------------------------------------------------------------------------------------
# the stand-in for a model

CUE = re.compile(
    r"\b(now|no longer|moved|changed|switched|raised|lowered|bumped|migrated|renamed|replaced|instead|"
    r"extended|since|updated|actually|anymore|corrected|correction)\b",
    re.I,
)
WORD = re.compile(r"[a-z][a-z'_-]{2,}")
STOP = set(
    "the and for with that this are was has have had from not but its you your our they them then than into "
    "onto over when what which who how also just only any all can will would should could about there here "
    "been being were is".split()
)
SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")


def words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOP}


def tokens_of(text: str) -> set[str]:
    return {t.strip(".,;:!?()[]{}\"'`").lower() for t in text.split()} - {""}


class StandIn:
    """An OpenAI-compatible `POST /v1/chat/completions` on 127.0.0.1 that answers somna's prompts by fixed
    rules (it is NOT a model; the rules were written before any run and not tuned on the results):

    - judge: the newer memory (by its "written" date) holds when it says so ("now", "moved", "changed",
      "raised", "no longer", "since", ...) and shares at least a quarter of its content words with the older
      one, or when the two share at least half of their content words and differ (another value for the same
      thing); otherwise "both" (they do not contradict). Same date: "unsure".
    - merge: the longest member, then every sentence of the others that has a word it lacks.
    - anything else (a skill draft, a transcript, a block to compress): an empty JSON object, which somna
      rejects as unusable and changes nothing for.
    """

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.verdicts: dict[str, int] = {}
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self.send_error(404)
                    return
                content = standin.answer(body["messages"])
                prompt = sum(len(m["content"]) for m in body["messages"]) // 4
                out = json.dumps(
                    {
                        "id": "chatcmpl-standin",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": len(content) // 4 + 1,
                            "total_tokens": prompt + len(content) // 4 + 1,
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def answer(self, messages: list[dict[str, str]]) -> str:
        system, user = messages[0]["content"], messages[-1]["content"]
        kind = (
            "judge"
            if system.startswith("Two memories")
            else "merge"
            if system.startswith("These memories of a coding agent say nearly")
            else "other"
        )
        self.calls[kind] = self.calls.get(kind, 0) + 1
        if kind == "judge":
            holds, reason = self.judge(user)
            self.verdicts[holds] = self.verdicts.get(holds, 0) + 1
            return json.dumps({"holds": holds, "reason": reason})
        if kind == "merge":
            return json.dumps(self.merge(user))
        return "{}"

    @staticmethod
    def judge(user: str) -> tuple[str, str]:
        m = re.match(r"A \(written ([^)]*)\):\n(.*?)\n\nB \(written ([^)]*)\):\n(.*)\Z", user, re.S)
        if not m:
            return "unsure", "the stand-in could not read the two memories"
        date_a, text_a, date_b, text_b = m.groups()
        if date_a == date_b:
            return "unsure", "written at the same time"
        newer, older, label = (text_a, text_b, "A") if date_a > date_b else (text_b, text_a, "B")
        wn, wo = words(newer), words(older)
        overlap = len(wn & wo) / max(1, len(wn | wo))
        if CUE.search(newer) and overlap >= 0.25:
            return label, "the newer memory says it changed"
        if overlap >= 0.5 and tokens_of(newer) != tokens_of(older):
            return label, "the newer memory gives another value for the same thing"
        return "both", "they are about different things"

    @staticmethod
    def merge(user: str) -> dict[str, str]:
        parts = re.split(r"(?:\A|\n\n)Memory \d+: ", user)
        members = []
        for p in parts:
            if p.strip():
                title, _, body = p.partition("\n")
                members.append((title.strip(), body.strip() or title.strip()))
        if not members:
            return {"title": "merged", "content": user}
        title, text = max(members, key=lambda m: len(m[1]))
        have = tokens_of(text)
        for _, body in members:
            for sentence in SENTENCE.split(body):
                if sentence.strip() and not tokens_of(sentence) <= have:
                    text = text.rstrip() + " " + sentence.strip()
                    have |= tokens_of(sentence)
        return {"title": title[:120], "content": text}


# ---------------------------------------------------------------------------------------------------------
# somna: everything this bench uses from somna is here


class CachedEmbedder:
    """The store's embedder, remembering every text it embedded: the probes' queries are asked after every
    session, so each is embedded once (the same vectors)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.cache: dict[str, list[float]] = {}

    @property
    def ready(self) -> bool:
        return bool(self.inner.ready)

    def embed(self, texts: list[str]) -> list[list[float]]:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            self.cache.update(zip(todo, self.inner.embed(todo), strict=True))
        return [self.cache[t] for t in texts]


def open_store(root: Path, embedder: Any, policy: str, standin: StandIn | None) -> Store:
    store = Store.init(root, embedder=embedder)
    if policy == "sleep+model":
        assert standin is not None
        (root / "somna.toml").write_text(
            f'[llm]\nmodel = "openai/somna-test"\napi_base = "{standin.base}"\napi_key_env = "{KEY_ENV}"\n'
            "timeout = 20\n",
            encoding="utf-8",
        )
        store.close()
        store = Store(root, embedder=embedder)
        store.sync()  # commits somna.toml, as a person editing it would
    return store


def write_session(store: Store, items: list[dict[str, Any]], session: int, last: str) -> str:
    """One session in one bulk write, stamped in a later second than the session before; its stamp."""
    while last and notes.now_iso() <= last:
        time.sleep(0.05)
    if not items:
        return last
    ids = store.write_many(items, author=AUTHOR, message=f"session {session}")
    return str(store.read(ids[0])["meta"].get("created") or notes.now_iso())


def sleep(store: Store, policy: str) -> dict[str, Any]:
    if policy == "append-only":
        return {}
    extra = llm_passes(store) if policy == "sleep+model" else []
    report = Cycle(store, extra_passes=extra).run()

    def brief(a: dict[str, Any]) -> dict[str, Any]:
        d = a.get("data") or {}
        out = {"kind": a["kind"], "ids": list(a.get("targets") or {}), "rationale": a.get("rationale", "")}
        if a.get("why"):
            out["why"] = a["why"]
        if a["kind"] == "supersede":
            out |= {"old": d.get("old"), "new": d.get("new")}
        return out

    keep = ("merge", "supersede", "archive")
    return {
        "seconds": round(report.seconds, 2),
        "applied": report.counts(),
        "queued": len(report.queued),
        "dropped_by_gate": len([a for a in report.dropped if "exam" in str(a.get("why", "")).lower()]),
        "dropped": len(report.dropped),
        "tokens": report.tokens,
        "exam": report.exam,
        "changes": [brief(a) for a in report.applied if a["kind"] in keep],
        "dropped_changes": [brief(a) for a in report.dropped if a["kind"] in keep],
        "notes": [n for n in report.notes if "unusable LLM answer for skill" not in n][:20],
    }


def active_memories(store: Store) -> dict[str, tuple[str, str]]:
    """Every memory: id -> (its text, status); the text is the body, after the title when the body does not
    open with it (as somna.sleep.exam.text_of)."""
    return {
        r.id: (
            r.body if r.body.lstrip().startswith(r.title.strip()) else f"{r.title}\n{r.body}",
            r.status or "active",
        )
        for r in store.index.all_rows("memory")
    }


def top(store: Store, query: str) -> list[str]:
    return [h["id"] for h in store.search(query, limit=TOP)["hits"]]


# ---------------------------------------------------------------------------------------------------------
# measuring


def measure(store: Store, track: Track, s: int) -> dict[str, Any]:
    mems = active_memories(store)
    active = {k: text for k, (text, status) in mems.items() if status not in notes.INACTIVE}
    hits: dict[str, list[str]] = {}

    def search(q: str) -> list[str]:
        if q not in hits:
            hits[q] = top(store, q)
        return hits[q]

    ups = [u for u in track.updates if u.t <= s]
    right, wrong = 0, []
    for u in ups:
        h = search(u.question)
        first = active.get(h[0], "") if h else ""
        ok = u.new in first and (u.old not in first or u.old in u.new_text)
        right += ok
        if not ok:
            wrong.append({"question": u.question, "top": first[:160], "new": u.new, "old": u.old})
    live = [p for p in track.probes if p.t <= s and (p.until is None or s < p.until)]
    found, lost = 0, []
    for p in live:
        ok = any(p.expect in active.get(h, "") for h in search(p.query))
        found += ok
        if not ok:
            lost.append({"query": p.query, "expect": p.expect, "kind": p.kind})
    return {
        "updates": len(ups),
        "rank1": right,
        "probes": len(live),
        "found": found,
        "tokens": sum(somna_tokens(text) for text in active.values()),
        "active": len(active),
        "memories": len(mems),
        "wrong_rank1": wrong,
        "lost": lost,
    }


@dataclass
class Run:
    stream: str
    policy: str
    points: list[dict[str, Any]] = field(default_factory=list)  # one per session, summed over the tracks
    cycles: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def run_stream(
    stream: Stream, policies: list[str], embedder: Any, standin: StandIn, log: Callable[[str], None]
) -> list[Run]:
    """Every policy on the stream, session by session side by side (each in its own store): session s is
    written to every store, then each sleeping store runs its cycle, then each is measured. A cycle that
    raises is recorded as an error (its store is kept for a look) and the run goes on."""
    runs = {p: Run(stream.name, p) for p in policies}
    per_track: dict[str, list[list[dict[str, Any]]]] = {p: [] for p in policies}
    for track in stream.tracks:
        tmp = {p: Path(tempfile.mkdtemp(prefix=f"somna-curve-{p.replace('+', '-')}-")) for p in policies}
        stores = {p: open_store(tmp[p] / "store", embedder, p, standin) for p in policies}
        points: dict[str, list[dict[str, Any]]] = {p: [] for p in policies}
        last = dict.fromkeys(policies, "")
        keep: set[str] = set()
        try:
            for s, items in enumerate(track.sessions, 1):
                for p in policies:
                    t0 = time.monotonic()
                    last[p] = write_session(stores[p], items, s, last[p])
                    try:
                        cyc = sleep(stores[p], p)
                    except Exception as exc:  # noqa: BLE001 (a failing cycle is a finding, not the end of the run)
                        cyc = {
                            "error": f"{type(exc).__name__}: {str(exc)[:400]}",
                            "store": str(tmp[p] / "store"),
                        }
                        keep.add(p)
                        log(
                            f"  ! {stream.name}/{track.name} {p} session {s}: the cycle failed: {cyc['error']}"
                        )
                    if cyc:
                        runs[p].cycles.append({"track": track.name, "session": s, **cyc})
                    points[p].append(measure(stores[p], track, s))
                    runs[p].seconds += time.monotonic() - t0
        finally:
            for p in policies:
                stores[p].close()
                if p not in keep:
                    shutil.rmtree(tmp[p], ignore_errors=True)
        for p in policies:
            per_track[p].append(points[p])
            q = points[p][-1]
            log(
                f"  {stream.name}/{track.name} {p}: rank-1 {q['rank1']}/{q['updates']}, details "
                f"{q['found']}/{q['probes']}, {q['tokens']} tokens in {q['active']} active memories "
                f"({runs[p].seconds:.0f} s)"
            )
    for p in policies:
        for s in range(stream.length):
            agg: dict[str, Any] = {"session": s + 1, "wrong_rank1": [], "lost": []}
            for pts in per_track[p]:
                q = pts[min(s, len(pts) - 1)]  # a shorter track stays at its last state
                for k in ("updates", "rank1", "probes", "found", "tokens", "active", "memories"):
                    agg[k] = agg.get(k, 0) + q[k]
                agg["wrong_rank1"] += q["wrong_rank1"]
                agg["lost"] += q["lost"]
            runs[p].points.append(agg)
        runs[p].seconds = round(runs[p].seconds, 1)
    return list(runs.values())


# ---------------------------------------------------------------------------------------------------------
# reporting


def rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def summary(runs: list[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in runs:
        last = r.points[-1]
        cyc = r.cycles
        applied: dict[str, int] = {}
        for c in cyc:
            for k, v in c.get("applied", {}).items():
                applied[k] = applied.get(k, 0) + v
        out.setdefault(r.stream, {})[r.policy] = {
            "rank1": rate(last["rank1"], last["updates"]),
            "rank1_n": f"{last['rank1']}/{last['updates']}",
            "details": rate(last["found"], last["probes"]),
            "details_n": f"{last['found']}/{last['probes']}",
            "details_min": min((rate(p["found"], p["probes"]) or 1.0) for p in r.points),
            "tokens": last["tokens"],
            "active": last["active"],
            "memories": last["memories"],
            "applied": applied,
            "queued": sum(c.get("queued", 0) for c in cyc),
            "dropped_by_gate": sum(c.get("dropped_by_gate", 0) for c in cyc),
            "llm_tokens": sum(c.get("tokens", 0) for c in cyc),
            "cycle_seconds": round(sum(c.get("seconds", 0) for c in cyc), 1),
            "failed_cycles": [
                f"{c['track']} session {c['session']}: {c['error']}" for c in cyc if "error" in c
            ],
            "seconds": r.seconds,
        }
    return out


def verdicts(summ: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each stream and sleep policy: better on rank-1, on tokens, and no detail lost (vs append-only)."""
    out: dict[str, dict[str, Any]] = {}
    for stream, pol in summ.items():
        base = pol["append-only"]
        for name in ("sleep", "sleep+model"):
            p = pol[name]
            lost = p["details"] is not None and base["details"] is not None and p["details"] < base["details"]
            out.setdefault(stream, {})[name] = {
                "rank1_better": (p["rank1"] or 0) > (base["rank1"] or 0),
                "rank1_not_worse": (p["rank1"] or 0) >= (base["rank1"] or 0),
                "tokens_better": p["tokens"] < base["tokens"],
                "zero_detail_loss": p["details"] == 1.0
                or (not lost and p["details_min"] >= base["details_min"]),
                "all_details": p["details"] == 1.0,
            }
    return out


def losses(runs: list[Run]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """For each sleeping run, every session after whose cycle a planted detail stopped being found, with the
    merges, supersedes and archives that cycle applied (the likely cause) and the probes it lost."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in runs:
        if r.policy == "append-only":
            continue
        prev: set[tuple[str, str]] = set()
        rows = []
        for p in r.points:
            lost = {(x["query"], x["expect"]) for x in p["lost"]}
            new = sorted(lost - prev)
            cycles = [c for c in r.cycles if c["session"] == p["session"]]
            changes = [
                f"{c['track']}: {ch['kind']} {ch['rationale']}" for c in cycles for ch in c.get("changes", [])
            ]
            if new and changes:
                rows.append({"session": p["session"], "lost": [list(x) for x in new], "applied": changes})
            prev = lost
        out.setdefault(r.stream, {})[r.policy] = rows
    return out


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def markdown(result: dict[str, Any]) -> str:
    summ, ver = result["summary"], result["verdicts"]
    lines = [
        "### Learning curve: append-only vs sleep vs sleep with a (stand-in) model (issue 14, point 4)",
        "",
        f"Run {result['date']} on {result['machine']['cpus']} shared CPUs, embedder {result['embedder']}, "
        f"{result['seconds']:.0f} s in all{' (--quick)' if result['quick'] else ''}. Each policy replays the same "
        "sessions in time order into its own fresh store; the measures are taken after every session (after "
        "the cycle, for the sleep policies).",
        "",
        "**sleep+model uses a stand-in, not a real model**: an OpenAI-compatible HTTP server on 127.0.0.1 started "
        "by the bench, answering somna's judge and merge prompts by fixed rules (bench/learning_curve.py, "
        "`StandIn`): the newer memory holds when it says it changed and shares a quarter of its words with the "
        "older, or shares half of them and differs; a merge is the longest member plus every sentence of the "
        "others with a word it lacks; everything else is answered with `{}` (rejected by somna). Its numbers "
        "show what somna does with sensible answers, not what a model would answer.",
        "",
        "Runs are not exactly repeatable: `created` has one-second resolution and what a cycle takes as new "
        "(written or edited since the last cycle started) depends on when it ran, so two runs can differ by a "
        "few pairs.",
        "",
        "- **rank-1**: updates planted so far whose question's top hit holds the newer value and not the older.",
        "- **details**: planted probes whose expected string is in an active memory in the top 5 "
        "(lowest share over the run in brackets).",
        "- **tokens**: (len(text) + 3) // 4 summed over active memories (what an agent would read; the text is "
        "the body, after the title when the body does not open with it).",
        "",
    ]
    for stream, pol in summ.items():
        lines += [
            f"#### {stream}: {result['streams'][stream]}",
            "",
            "| policy | rank-1 current value | details found | active tokens | active / all memories | applied "
            "| queued | dropped by the gate | cycles (s) | run (s) |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for name in POLICIES:
            p = pol[name]
            applied = ", ".join(f"{k} {v}" for k, v in sorted(p["applied"].items()) if k != "link") or "-"
            lines.append(
                f"| {name} | {fmt(p['rank1'])} ({p['rank1_n']}) | {fmt(p['details'])} ({p['details_n']}; "
                f"min {fmt(p['details_min'])}) | {p['tokens']:,} | {p['active']} / {p['memories']} | {applied} | "
                f"{p['queued']} | {p['dropped_by_gate']} | {p['cycle_seconds']} | {p['seconds']} |"
            )
        lines.append("")
        for name in ("sleep", "sleep+model"):
            v, p, b = ver[stream][name], pol[name], pol["append-only"]
            lines.append(
                f"- {name} vs append-only: rank-1 {fmt(p['rank1'])} vs {fmt(b['rank1'])} "
                f"(**{'better' if v['rank1_better'] else 'not better'}**), active tokens {p['tokens']:,} vs "
                f"{b['tokens']:,} (**{'fewer' if v['tokens_better'] else 'not fewer'}**), details "
                f"{fmt(p['details'])} vs {fmt(b['details'])} "
                f"(**{'no detail lost' if v['all_details'] else 'details lost'}**)."
            )
        lines.append("")
    lines += ["#### Verdict", ""]
    for stream in summ:
        for name in ("sleep", "sleep+model"):
            v = ver[stream][name]
            both = v["rank1_better"] and v["tokens_better"] and v["all_details"]
            lines.append(
                f"- {stream}, {name}: "
                + (
                    "beats append-only on rank-1 current-value accuracy and on active tokens, at zero detail loss."
                    if both
                    else "does NOT beat append-only on all three: "
                    + ", ".join(
                        x
                        for x, bad in (
                            ("rank-1 not better", not v["rank1_better"]),
                            ("tokens not fewer", not v["tokens_better"]),
                            ("details lost", not v["all_details"]),
                        )
                        if bad
                    )
                    + "."
                )
            )
    lines += ["", "![learning curve](../../docs/learning_curve.png)", ""]
    failed = [
        f"- {stream}, {name}: {f}"
        for stream, pol in summ.items()
        for name, p in pol.items()
        for f in p.get("failed_cycles", [])
    ]
    if failed:
        lines += [
            "#### Cycles that failed (an exception; the run went on with the store as the cycle left it)",
            "",
        ]
        lines += failed + [""]
    harm = [
        (stream, name, row)
        for stream, pol in result.get("losses", {}).items()
        for name, rows in pol.items()
        for row in rows
    ]
    if harm:
        lines += [
            "#### Sessions after whose cycle a planted detail stopped being found",
            "",
            "What the cycle applied (merges, supersedes, archives), and the probes lost right after it. A probe "
            "can also drop out of the top 5 because new memories of the same session outrank it; the append-only "
            "column of the table shows how often that happens without sleep.",
            "",
        ]
        for stream, name, row in harm:
            lost = "; ".join(f"{q!r} -> {e!r}" for q, e in row["lost"])
            lines.append(f"- {stream}, {name}, session {row['session']}: lost {lost}")
            lines += [f"  - applied {a[:300]}" for a in row["applied"]]
        lines.append("")
    misses = result.get("final_misses", {})
    if misses:
        lines += ["#### What is still wrong after the last session", ""]
        for stream, pol in misses.items():
            for name, m in pol.items():
                for w in m["wrong_rank1"][:8]:
                    lines.append(
                        f"- {stream}, {name}, rank-1: {w['question']!r}: top hit {w['top']!r} "
                        f"(newer {w['new']!r}, older {w['old']!r})"
                    )
                for w in m["lost"][:8]:
                    lines.append(f"- {stream}, {name}, detail not found: {w['query']!r} -> {w['expect']!r}")
        lines.append("")
    return "\n".join(lines)


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = list(dict.fromkeys(r.stream for r in runs))
    fig, axes = plt.subplots(3, len(streams), figsize=(4.6 * len(streams), 9), squeeze=False, sharex="col")
    style = {
        "append-only": ("tab:gray", "--"),
        "sleep": ("tab:blue", "-"),
        "sleep+model": ("tab:orange", ":"),
    }
    for col, stream in enumerate(streams):
        for r in [r for r in runs if r.stream == stream]:
            xs = [p["session"] for p in r.points]
            color, ls = style[r.policy]
            label = r.policy + (" (stand-in)" if r.policy == "sleep+model" else "")
            series = (
                [rate(p["rank1"], p["updates"]) for p in r.points],
                [rate(p["found"], p["probes"]) for p in r.points],
                [p["tokens"] for p in r.points],
            )
            for row, ys in enumerate(series):
                axes[row][col].plot(xs, ys, color=color, linestyle=ls, label=label, linewidth=1.6)
        axes[0][col].set_title(stream)
        axes[0][col].set_ylabel("rank-1 current value")
        axes[1][col].set_ylabel("details found (top 5)")
        axes[2][col].set_ylabel("active tokens")
        axes[2][col].set_xlabel("session")
        for row in (0, 1):
            axes[row][col].set_ylim(-0.03, 1.03)
        for row in range(3):
            axes[row][col].grid(alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle("somna: append-only vs sleep vs sleep + stand-in model", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="coding,letta,lme")
    ap.add_argument("--quick", action="store_true", help="14 coding sessions, 2 letta rows, 2 lme questions")
    ap.add_argument("--lme-questions", type=int, default=4)
    ap.add_argument("--embedder", default="minilm", help="minilm (default) or hash")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--out", default="learning_curve", help="file name (no suffix) in bench/results/")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "learning_curve.png")
    ap.add_argument("--render", action="store_true", help="re-render the .md and the plot from the .json")
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads((HERE / "results" / f"{args.out}.json").read_text(encoding="utf-8"))
        return finish(result, [Run(**r) for r in result["runs"]], args.out, args.plot)
    names = [s for s in args.streams.split(",") if s]
    policies = [p for p in args.policies.split(",") if p]
    makers = {
        "coding": lambda: coding_stream(args.quick),
        "letta": lambda: letta_stream(args.quick),
        "lme": lambda: lme_stream(args.quick, args.lme_questions),
    }
    unknown = set(names) - set(makers) or set(policies) - set(POLICIES)
    if unknown:
        ap.error(f"unknown: {sorted(unknown)}")
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    inner = make_embedder(args.embedder)
    if hasattr(inner, "wait"):
        inner.wait()
    embedder = CachedEmbedder(inner)
    os.environ[KEY_ENV] = "not-a-real-key"
    # The gate stages each trial in a `somna-staging-*` folder of the temp dir and sweeps the ones it takes for
    # leftovers of killed cycles. On a machine shared with other runs (a test suite ages and sweeps such
    # folders), a sweep in another process removed a live trial of this bench twice (the cycle failed with
    # FileNotFoundError / "could not parse HEAD"); a private temp dir keeps the trials out of their reach.
    private = Path(tempfile.mkdtemp(prefix="somna-curve-tmp-"))
    tempfile.tempdir = str(private)
    standin = StandIn()
    runs: list[Run] = []
    streams = {}
    try:
        for name in names:
            stream = makers[name]()
            streams[name] = stream.about
            log(f"{name}: {stream.about}")
            runs += run_stream(stream, policies, embedder, standin, log)
    finally:
        standin.close()
        tempfile.tempdir = None
        shutil.rmtree(private, ignore_errors=True)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": args.quick,
        "embedder": embedder.name,
        "seconds": round(time.monotonic() - t0, 1),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "streams": streams,
        "standin": {"calls": standin.calls, "verdicts": standin.verdicts},
        "runs": [r.__dict__ for r in runs],
    }
    return finish(result, runs, args.out, args.plot)


def finish(result: dict[str, Any], runs: list[Run], out: str, plot_path: Path) -> int:
    """The summary, the verdicts, the .json, the .md and the plot; the exit status."""
    summ = summary(runs)
    complete = all(set(POLICIES) <= set(pol) for pol in summ.values())
    result |= {
        "summary": summ,
        "verdicts": verdicts(summ) if complete else {},
        "final_misses": {},
        "losses": losses(runs),
    }
    for r in runs:
        result["final_misses"].setdefault(r.stream, {})[r.policy] = {
            "wrong_rank1": r.points[-1]["wrong_rank1"],
            "lost": r.points[-1]["lost"],
        }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{out}.json").write_text(json.dumps(result, separators=(",", ":")), encoding="utf-8")
    if result["verdicts"]:
        md = markdown(result)
        (HERE / "results" / f"{out}.md").write_text(md, encoding="utf-8")
        print(md)
    plot(runs, plot_path)
    ok = all(
        v["rank1_not_worse"] and v["all_details"] and (v["rank1_better"] or v["tokens_better"])
        for pol in result["verdicts"].values()
        for v in pol.values()
    )
    return 0 if ok and result["verdicts"] else 1


if __name__ == "__main__":
    sys.exit(main())
