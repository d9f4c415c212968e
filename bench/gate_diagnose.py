"""Why the gate drops what it drops: one cycle's plan on a copy of the bench's synthetic store, tried round by
round as `gate.check` tries it, printing for a few lost probes the probe, the memory that answered it before,
what the plan did to that memory, and the hits after (each with its status, whether it holds the expected
details, and which change wrote it).

    .venv/bin/python bench/gate_diagnose.py --n 3000 [--show 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import search_latency  # noqa: E402

from somna.sleep import exam, gate  # noqa: E402
from somna.sleep.cycle import Cycle  # noqa: E402
from somna.sleep.passes import plan  # noqa: E402
from somna.store import Store  # noqa: E402


def short(text: str, n: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--show", type=int, default=5)
    args = ap.parse_args(argv)
    emb = search_latency.model()
    root, _ = search_latency.build(args.n, emb)
    with tempfile.TemporaryDirectory(prefix="somna-gate-diagnose-") as tmp:
        shutil.copytree(root, Path(tmp) / "store", symlinks=True)
        store = Store(Path(tmp) / "store", embedder=emb)
        cycle = Cycle(store, dry_run=True)
        t0 = time.perf_counter()
        actions = plan(cycle.snapshot(), cycle.th)
        tried = [a for a in actions if cycle._mode(a) != "propose" or a.kind in ("merge", "supersede")]
        gated = [a for a in tried if a.kind in gate.GATED]
        kinds: dict[str, int] = {}
        for a in gated:
            kinds[a.kind] = kinds.get(a.kind, 0) + 1
        print(f"plan: {len(actions)} actions, gated {kinds} ({time.perf_counter() - t0:.0f} s)")
        with gate.remembering(store):
            diagnose(store, gated, args.show)
        store.close()
    return 0


def diagnose(store: Store, gated: list[gate.Action], show: int) -> None:
    touched = {ref for a in gated for ref in a.targets}
    probes = exam.probes_of(store, only=touched)
    vectors: exam.Vectors = {}
    before = exam.run(store, probes, vectors=vectors)
    before = [o for o in before if o.probe.source != "store" or o.answered_by == o.probe.about]
    probes = [o.probe for o in before]
    print(f"probes: {len(probes)}, passing before: {sum(o.passed for o in before)}")
    kept = list(gated)
    for rnd in range(1, gate.MAX_ROUNDS + 1):
        t0 = time.perf_counter()
        with gate.staging(store) as stage:
            successors, took = gate._apply(stage, kept)
            after = exam.run(stage, probes, vectors=vectors)
            lost = exam.regressions(before, after, stage, successors, original=store)
            print(f"round {rnd}: tried {len(kept)}, took {len(took)}, lost {len(lost)} "
                  f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
            wrote_by = {m: a for a, wrote in took for m in wrote}
            by_target: dict[str, list[gate.Action]] = {}
            for a, _ in took:
                for ref in a.targets:
                    by_target.setdefault(ref, []).append(a)
            direct = [r for r in lost if {r.probe.about, r.before.answered_by} & by_target.keys()]
            above = [r for r in lost if r not in direct and set(r.after.hits) & wrote_by.keys()]
            neither = [r for r in lost if r not in direct and r not in above]
            print(f"  blamed on a change of its memory: {len(direct)}, on a change that wrote a hit: "
                  f"{len(above)}, on none: {len(neither)}")  # fmt: skip
            for label, group in (("direct", direct), ("above", above), ("none", neither)):
                for r in group[:show]:
                    explain(store, stage, r, label, by_target, wrote_by, successors)
        culprits, shifted = gate._culprits(lost, took)
        print(f"  shifted (not held against the plan): {len(shifted)}")
        if len(shifted) == len(lost) or not culprits:
            break
        dropped = {id(a) for a, _ in culprits}
        print(f"  dropped {len(dropped)}: {sorted({a.kind for a, _ in culprits})}")
        kept = [a for a in kept if id(a) not in dropped]


def explain(store: Store, stage: Store, r: exam.Regression, label: str, by_target: dict, wrote_by: dict,
            successors: dict[str, str]) -> None:  # fmt: skip
    p, was = r.probe, r.before.answered_by or ""
    print(f"  [{label}] probe {p.id} {p.query!r} expects {list(p.expect)}; about {p.about}, answered by {was} "
          f"at rank {r.before.rank}; after: passed={r.after.passed} by {r.after.answered_by}")  # fmt: skip
    row = stage.index.get(was)
    print(f"    its memory now: {row.status if row else 'gone'}; changes of it: "
          f"{[a.kind for a in by_target.get(was, [])]}; successor {successors.get(was)}")  # fmt: skip
    print(
        f"    text before: {short(exam.text_of(store.index.get(was)), 160) if store.index.get(was) else '?'}"
    )
    for rank, hid in enumerate(r.after.hits, 1):
        h = stage.index.get(hid)
        if h is None:
            continue
        text = exam.text_of(h)
        print(f"    hit {rank} {hid} {h.status or 'active'} holds={exam.holds(text, p.expect)} "
              f"wrote_by={getattr(wrote_by.get(hid), 'kind', '-')}: {short(text)}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
