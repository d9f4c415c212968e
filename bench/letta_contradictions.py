"""Benchmark: does one deterministic sleep cycle pair each contradicting fact with the fact it contradicts?

Acceptance (issue 4, point 1): write the 2,000 letta facts, then the 1,100 contradicting facts; one
deterministic cycle pairs contradicting facts with the facts they contradict. Report precision and recall
of the pairs. After the cycle each question retrieves the newer fact above the older one, and the older is
still in history.

    .venv/bin/python bench/letta_contradictions.py [--rows 0:200] [--embedder minilm|hash]

Expected pairs: for question q of a row, (contradicting_facts[q], facts[supporting_fact_indices[q][0]]).
A detected pair is an applied `supersede` whose newer memory is a contradicting fact. Precision = detected
pairs that are expected / detected pairs; recall = expected pairs detected / expected pairs (distinct).
Writes bench/results/letta_contradictions.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from somna.embeddings import make_embedder  # noqa: E402
from somna.sleep.cycle import Cycle  # noqa: E402
from somna.sleep.passes import Thresholds  # noqa: E402
from somna.store import Store  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "letta-facts" / "letta_bench_gen_200.jsonl"


def clean(fact: str) -> str:
    fact = fact.strip()
    while len(fact) > 1 and fact[0] == fact[-1] and fact[0] in "\"'":
        fact = fact[1:-1].strip()
    return fact


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="0:200")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--thresholds", default="{}", help='JSON overrides, e.g. {"contradiction": 0.6}')
    args = ap.parse_args(argv)
    lo, hi = (int(x) for x in args.rows.split(":"))
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()][lo:hi]

    facts = list(dict.fromkeys(f for r in rows for f in r["facts"]))
    expected: set[tuple[str, str]] = set()
    contradicting: list[str] = []
    questions: list[tuple[str, str, str]] = []
    for r in rows:
        for q, sup, con in zip(r["question"], r["supporting_fact_indices"], r["contradicting_facts"], strict=True):
            c = clean(con)
            old = r["facts"][sup[0]]
            if c == old:
                continue
            expected.add((c, old))
            contradicting.append(c)
            questions.append((q, c, old))
    contradicting = [c for c in dict.fromkeys(contradicting) if c not in set(facts)]

    embedder = make_embedder(args.embedder)
    t0 = time.monotonic()
    if hasattr(embedder, "wait"):
        embedder.wait()
    tmp = Path(tempfile.mkdtemp(prefix="somna-bench-contra-"))
    store = Store.init(tmp / "store", embedder=embedder)
    ids_old = store.write_many([{"content": f} for f in facts], author="bench", message="facts")
    time.sleep(1.1)  # the contradicting facts are written later: their `created` is newer
    ids_new = store.write_many([{"content": c} for c in contradicting], author="bench", message="corrections")
    text_of = dict(zip(ids_old, facts, strict=True)) | dict(zip(ids_new, contradicting, strict=True))
    id_of = {t: i for i, t in text_of.items()}
    t_load = time.monotonic() - t0

    t1 = time.monotonic()
    th = Thresholds(**json.loads(args.thresholds))
    report = Cycle(store, thresholds=th).run()
    t_cycle = time.monotonic() - t1
    detected = {(text_of.get(a["data"]["new"], ""), text_of.get(a["data"]["old"], ""))
                for a in report.applied if a["kind"] == "supersede"}
    queued = [a for a in report.queued if a["kind"] == "supersede"]
    hits = detected & expected
    precision = len(hits) / len(detected) if detected else 0.0
    recall = len(hits) / len(expected) if expected else 0.0

    newer_first = 0
    newer_first_all = 0
    old_in_history = 0
    for q, c, old in questions:
        res = store.search(q, limit=10)["hits"]
        ids = [h["id"] for h in res]
        if id_of[c] in ids and id_of[old] not in ids:
            newer_first += 1
        res_all = [h["id"] for h in store.search(q, limit=10, include_archived=True)["hits"]]
        if id_of[c] in res_all and (id_of[old] not in res_all or res_all.index(id_of[c]) < res_all.index(id_of[old])):
            newer_first_all += 1
    for _, _, old in questions[:100]:
        log = subprocess.run(["git", "log", "--format=%H", "--", f"memory/{id_of[old]}.md"], cwd=store.root,
                             capture_output=True, text=True).stdout.split()
        first = subprocess.run(["git", "show", f"{log[-1]}:memory/{id_of[old]}.md"], cwd=store.root,
                               capture_output=True, text=True).stdout
        old_in_history += old in first and (store.root / f"memory/{id_of[old]}.md").exists()

    result: dict[str, Any] = {
        "rows": args.rows, "embedder": embedder.name, "thresholds": th.__dict__, "facts": len(facts), "contradicting": len(contradicting),
        "expected_pairs": len(expected), "detected_pairs": len(detected), "correct_pairs": len(hits),
        "precision": precision, "recall": recall, "queued_unsure": len(queued),
        "questions": len(questions),
        "newer_found_older_hidden": newer_first / len(questions),
        "newer_above_older_incl_archived": newer_first_all / len(questions),
        "older_in_history_checked": 100, "older_in_history": old_in_history,
        "load_s": t_load, "cycle_s": t_cycle, "applied": report.counts(), "dropped": len(report.dropped),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }
    md = "\n".join([
        f"### letta-facts contradictions: one deterministic sleep cycle ({result['rows']} rows, {embedder.name})",
        "",
        "| facts | contradicting | expected pairs | detected | correct | precision | recall | queued (unsure) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {len(facts)} | {len(contradicting)} | {len(expected)} | {len(detected)} | {len(hits)} | "
        f"{precision:.3f} | {recall:.3f} | {len(queued)} |",
        "",
        f"- after the cycle, {result['newer_found_older_hidden']:.1%} of {len(questions)} questions find the newer fact "
        f"with the older one out of the default results; with archived included, the newer ranks above the "
        f"older for {result['newer_above_older_incl_archived']:.1%}",
        f"- older fact still in the file and in git history: {old_in_history}/100 checked",
        f"- load {t_load:.1f} s, cycle {t_cycle:.1f} s; applied {report.counts()}, dropped {len(report.dropped)}",
        f"- machine: {result['machine']}",
    ]) + "\n"
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "letta_contradictions.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (HERE / "results" / "letta_contradictions.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
