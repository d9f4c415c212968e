"""Detection and false-positive rates of somna.redaction on the test corpus; writes bench/results/secrets.json.

    python bench/secrets_rates.py [--code DIR ...]

A positive counts as detected when every «marked» secret in it is covered by findings (any kind); "exact" also
needs the finding's kind and span to match the label and the marks. A negative is a false positive when
anything at all is found in it. ``--code DIR`` also scans the *.py/*.md/*.rst/*.txt files under DIR (say, a
site-packages folder) and reports findings per MB: not a rate, since such trees hold real example credentials,
but a check on how noisy the rules are on ordinary code and documentation.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

from somna.redaction import scan

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "secrets"
RESULTS = ROOT / "bench" / "results" / "secrets.json"


def load_corpus(path: Path) -> list[tuple[str, str, list[tuple[int, int]]]]:
    """(label, text, spans of the «marked» secrets) for each '=== <label>' block of a corpus file."""
    cases = []
    for block in re.split(r"^=== ", path.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        label, _, raw = block.partition("\n")
        raw = raw.rstrip("\n")
        text, spans, pos = "", [], 0
        for m in re.finditer(r"«(.*?)»", raw, flags=re.DOTALL):
            text += raw[pos : m.start()]
            spans.append((len(text), len(text) + len(m.group(1))))
            text += m.group(1)
            pos = m.end()
        cases.append((label.strip(), text + raw[pos:], spans))
    return cases


def covered(span: tuple[int, int], findings: list[tuple[int, int]]) -> bool:
    start, end = span
    return all(any(s <= i < e for s, e in findings) for i in range(start, end))


def rate(hits: int, total: int) -> float:
    return round(hits / total, 4) if total else 0.0


def corpus_rates() -> dict[str, object]:
    positives = load_corpus(DATA / "positives.txt")
    negatives = load_corpus(DATA / "negatives.txt")
    per_kind: dict[str, Counter[str]] = {}
    detected = exact = 0
    for label, text, spans in positives:
        findings = scan(text)
        found = [(f.start, f.end) for f in findings]
        kinds = {(f.start, f.end): f.kind for f in findings}
        ok = all(covered(span, found) for span in spans)
        ok_exact = all(kinds.get(span) == label for span in spans)
        counts = per_kind.setdefault(label, Counter())
        counts.update(total=1, detected=ok, exact=ok_exact)
        detected += ok
        exact += ok_exact
    flagged = [label for label, text, _ in negatives if scan(text)]
    return {
        "positives": len(positives),
        "negatives": len(negatives),
        "detection_rate": rate(detected, len(positives)),
        "exact_kind_and_span_rate": rate(exact, len(positives)),
        "false_positive_rate": rate(len(flagged), len(negatives)),
        "false_positives": flagged,
        "per_kind": {
            kind: {
                "cases": c["total"],
                "detection_rate": rate(c["detected"], c["total"]),
                "exact_rate": rate(c["exact"], c["total"]),
            }
            for kind, c in sorted(per_kind.items())
        },
    }


def throughput() -> dict[str, float]:
    """Seconds to scan ~5 MB: corpus cases mixed into prose that mentions tokens and passwords."""
    rng = random.Random(7)
    pieces = [
        text for _, text, _ in load_corpus(DATA / "positives.txt") + load_corpus(DATA / "negatives.txt")
    ]
    prose = "The token bucket refills at 10/s; password_hash is bcrypt; see commit a1b2c3d4e5f6. " * 20
    parts: list[str] = []
    while sum(map(len, parts)) < 5_000_000:
        parts.append(rng.choice(pieces) if rng.random() < 0.2 else prose)
    text = "\n".join(parts)
    started = time.perf_counter()
    scan(text)
    seconds = time.perf_counter() - started
    return {
        "megabytes": round(len(text) / 1e6, 2),
        "seconds": round(seconds, 3),
        "mb_per_s": round(len(text) / 1e6 / seconds, 2),
    }


def code_noise(dirs: list[Path]) -> dict[str, object]:
    files = size = 0
    kinds: Counter[str] = Counter()
    for root in dirs:
        for path in root.rglob("*"):
            if path.suffix not in (".py", ".md", ".rst", ".txt") or not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            files += 1
            size += len(text)
            kinds.update(f.kind for f in scan(text))
    megabytes = size / 1e6
    total = sum(kinds.values())
    return {
        "dirs": [str(d) for d in dirs],
        "files": files,
        "megabytes": round(megabytes, 1),
        "findings": total,
        "findings_per_mb": round(total / megabytes, 3) if megabytes else 0.0,
        "by_kind": dict(kinds.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--code", type=Path, nargs="*", default=[], help="also scan code/docs under these dirs"
    )
    args = parser.parse_args()
    results: dict[str, object] = corpus_rates()
    results["throughput"] = throughput()
    if args.code:
        results["code_noise"] = code_noise(args.code)
    print(f"positives {results['positives']}, negatives {results['negatives']}")
    print(f"detection rate        {results['detection_rate']:.2%}")
    print(f"exact kind+span rate  {results['exact_kind_and_span_rate']:.2%}")
    print(f"false-positive rate   {results['false_positive_rate']:.2%}  {results['false_positives']}")
    per_kind = results["per_kind"]
    assert isinstance(per_kind, dict)
    for kind, row in per_kind.items():
        detection, exact = row["detection_rate"], row["exact_rate"]
        print(f"  {kind:22s} {row['cases']:3d} cases  detected {detection:.0%}  exact {exact:.0%}")
    print(f"throughput            {results['throughput']}")
    if "code_noise" in results:
        print(f"code noise            {results['code_noise']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
