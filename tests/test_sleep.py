"""Sleep-time cycles: merge without loss, supersede the stale, stay put when nothing changed, never lose a write."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import git, somna

from somna.app import open_store
from somna.claims import Claim, denied, disagreement, stance
from somna.embeddings import HashEmbedder
from somna.index import Row
from somna.sleep.cycle import Cycle
from somna.sleep.passes import Snapshot, Thresholds, plan
from somna.store import Store
from somna.text import conflict, details, merge_texts, missing, people

# The hashing embedder is cruder than MiniLM: paraphrases score lower, so the thresholds are set for it.
TOML = "[sleep.thresholds]\nduplicate = 0.55\ncontradiction = 0.5\nsure = 0.6\nlink = 0.45\n"

DUPLICATES = [
    (
        "Run the unit tests with pytest -x so the run stops at the first failure.",
        "Run the unit tests with pytest -x so the run stops at the first failure; the timeout is 300 s.",
        "300 s",
    ),
    (
        "The dev database listens on port 5433, not the default port.",
        "The dev database listens on port 5433, not the default port; see config/db.toml.",
        "config/db.toml",
    ),
    (
        "Build the docs with mkdocs build before publishing the docs site.",
        "Build the docs with mkdocs build --strict before publishing the docs site.",
        "--strict",
    ),
]


@pytest.fixture
def sleepy(tmp_path: Path) -> Store:
    root = tmp_path / "s"
    Store.init(root).close()
    (root / "somna.toml").write_text(TOML, encoding="utf-8")
    return open_store(root, embedder=HashEmbedder())


def test_details_and_conflicts() -> None:
    d = details("Set PG_PORT=5433 in config/db.toml and run `make db` with --fresh")
    assert (
        {"5433"} <= d.numbers and "config/db.toml" in d.paths and "--fresh" in d.flags and "make db" in d.code
    )
    assert conflict("Ann Lee leads the payments team.", "Bob Stone leads the payments team.")
    assert conflict("The cache TTL is 300 seconds.", "The cache TTL is 600 seconds.")
    assert conflict("Retries are safe for GET requests here.", "Retries are not safe for GET requests here.")
    assert conflict("Use port 5433.", "Use port 5433; see config/db.toml.") is None
    ann, bob = Claim.of("Ann Lee leads the payments team."), Claim.of("Bob Stone leads the payments team.")
    assert disagreement(bob, ann) is None  # two strangers may both lead a payments team
    assert disagreement(bob, ann, acquainted=True)  # two people named together elsewhere: the role moved
    assert disagreement(Claim.of("Ann Lee leads the payments team and the search team."), ann) is None  # adds
    corrected = disagreement(Claim.of("Ann Lee no longer leads the payments team."), ann)
    assert corrected and corrected[3].startswith("the newer corrects")
    assert not Claim.of("Ann Lee hired Bob Stone.").same_as(
        Claim.of("Bob Stone hired Ann Lee.")
    )  # roles swapped
    kim, lee = (
        Claim.of("Kim Park has exhibited in New York."),
        Claim.of("Lee Chan has exhibited in New York."),
    )
    assert (
        disagreement(lee, kim) and disagreement(lee, kim, subjects={"Kim Park", "Lee Chan"}) is None
    )  # a city
    # names with a capital inside or an apostrophe are names: two people who swap roles are not duplicates
    assert people("Tomas Waden organized it with Diana McKinleigh and Sean O'Brien.") == [
        "Tomas Waden",
        "Diana McKinleigh",
        "Sean O'Brien",
    ]
    assert not Claim.of(
        "Tomas Waden organized a charity exhibition with the help of Diana McKinleigh."
    ).same_as(Claim.of("Diana McKinleigh organized a charity exhibition with the help of Tomas Waden."))
    merged = merge_texts([a for a, _, _ in DUPLICATES[:1]] + [DUPLICATES[0][1]])
    assert not missing(merged, details(DUPLICATES[0][1]).all())


def test_duplicates_merge_without_loss(sleepy: Store) -> None:
    for a, b, _ in DUPLICATES:
        sleepy.write(a, author="agent")
        sleepy.write(b, author="agent", force=True)
    sleepy.write("Unrelated: the office wifi is called Orbit.", author="agent")
    report = Cycle(sleepy).run()
    merges = [a for a in report.applied if a["kind"] == "merge"]
    assert len(merges) == len(DUPLICATES), report.markdown()
    active = [r for r in sleepy.index.all_rows("memory") if r.status == "active"]
    assert len(active) == len(DUPLICATES) + 1
    for a, _, detail in DUPLICATES:
        hits = sleepy.search(a)["hits"]
        assert detail in sleepy.read(hits[0]["id"])["content"], (detail, hits[0])
    log = git(sleepy.root, "log", "--format=%an|%s")
    assert "somna-sleep|sleep cycle" in log
    archived = [r for r in sleepy.index.all_rows("memory") if r.status == "archived"]
    assert len(archived) == 2 * len(DUPLICATES)
    for row in archived:  # originals are kept, readable, and point at their merge
        assert sleepy.read(row.id)["meta"]["superseded_by"]


def test_contradiction_supersedes_the_older(sleepy: Store) -> None:
    old = sleepy.write("The cache TTL for the catalog service is 300 seconds.", author="agent")
    time.sleep(1.1)
    new = sleepy.write("The cache TTL for the catalog service is 900 seconds.", author="agent", force=True)
    report = Cycle(sleepy).run()
    assert [a["kind"] for a in report.applied] == ["supersede"], report.markdown()
    hits = sleepy.search("catalog cache TTL")["hits"]
    assert hits[0]["id"] == new["id"] and old["id"] not in [h["id"] for h in hits]
    both = sleepy.search("catalog cache TTL", include_archived=True)["hits"]
    assert [h["id"] for h in both[:2]] == [new["id"], old["id"]]
    assert sleepy.read(old["id"])["meta"]["superseded_by"] == new["id"]
    assert "300 seconds" in sleepy.read(old["id"])["content"]  # superseded, never deleted
    sleepy.revert(old["id"], author="human")
    assert sleepy.read(old["id"])["meta"].get("status") is None


def test_a_supersede_that_would_hide_a_path_is_queued_not_applied(sleepy: Store) -> None:
    old = sleepy.write("The dev database listens on port 5433; see config/db.toml.", author="agent")
    time.sleep(1.1)
    new = sleepy.write(
        "The dev database listens on port 5433, not the default port.", author="agent", force=True
    )
    report = Cycle(sleepy).run()
    assert not [a for a in report.applied if a["kind"] == "supersede"], report.markdown()
    assert sleepy.read(old["id"])["meta"].get("status") is None  # config/db.toml stays in search
    queued = [a for a in report.queued if a["kind"] == "supersede"]
    assert not queued or "would hide ['config/db.toml']" in queued[0]["rationale"]
    assert new["id"] in [h["id"] for h in sleepy.search("dev database port")["hits"]]


def test_a_chain_of_corrections_keeps_only_the_newest_in_use(sleepy: Store) -> None:
    ids = []
    for ttl in (300, 600, 900):  # one cycle after each; the third is as close to the first as to the second
        ids.append(
            sleepy.write(
                f"The cache TTL for the catalog service is {ttl} seconds.", author="agent", force=True
            )["id"]
        )
        Cycle(sleepy).run()
        time.sleep(1.1)
    assert [sleepy.read(i)["meta"].get("superseded_by") for i in ids] == [ids[1], ids[2], None]
    assert [h["id"] for h in sleepy.search("catalog cache TTL")["hits"]] == [ids[2]]
    assert Cycle(sleepy).run().counts() == {}  # settled


def test_ten_cycles_lose_nothing_and_stop_rewriting(sleepy: Store) -> None:
    for a, b, _ in DUPLICATES:
        sleepy.write(a, author="agent")
        sleepy.write(b, author="agent", force=True)
    heads = []
    for _ in range(10):
        Cycle(sleepy).run()
        heads.append(git(sleepy.root, "rev-parse", "HEAD"))
    assert len(set(heads[1:])) == 1, "cycles after the first changed something again"
    for _, b, detail in DUPLICATES:
        hits = sleepy.search(b)["hits"]
        assert detail in sleepy.read(hits[0]["id"])["content"]


def test_ten_cycles_of_merges_of_merges_keep_every_detail(sleepy: Store) -> None:
    """Context collapse is a summary of a summary losing the reasons: here each cycle merges a memory that an
    agent restated with one more detail into the merge of the cycle before, ten times over."""
    base = "Run the payment tests with pytest -x so the run stops at the first failure."
    added = [
        "The suite needs PAYMENTS_SANDBOX=1.",
        "Set the timeout to 300 s.",
        "Fixtures live in tests/fixtures/pay.",
        "Use --maxfail=3 on CI.",
        "The flaky test is test_refund_race.",
        "Run `make db` first.",
        "Logs go to /var/log/pay.log.",
        "Use the payments-ci runner.",
        "Keep TZ=UTC.",
        "Retry 2 times on 429.",
    ]
    sleepy.write(base, author="agent")
    other = sleepy.write("The staging cluster is called kestrel and runs in eu-west-1.", author="agent")
    current = base
    for k, detail in enumerate(added):
        sleepy.write(f"{current} {detail}", author="agent", force=True)
        assert Cycle(sleepy).run().counts() == {"merge": 1}, k
        (row,) = [r for r in sleepy.index.all_rows("memory") if r.status == "active" and "pytest" in r.body]
        current = row.body.strip()
        assert current.count(base) == 1 and all(d in current for d in added[: k + 1]), current
        assert len(current) <= len(base) + sum(len(d) + 1 for d in added[: k + 1]), current  # no repetition
    assert sleepy.read(other["id"])["meta"].get("status") is None
    archived = [r for r in sleepy.index.all_rows("memory") if r.status == "archived"]
    assert len(archived) == 2 * len(added)  # every restatement and every earlier merge, kept and pointing on
    assert all(sleepy.read(r.id)["meta"]["superseded_by"] for r in archived)


def test_dry_run_changes_nothing(sleepy: Store) -> None:
    for a, b, _ in DUPLICATES:
        sleepy.write(a, author="agent")
        sleepy.write(b, author="agent", force=True)
    head = git(sleepy.root, "rev-parse", "HEAD")
    report = Cycle(sleepy, dry_run=True).run()
    assert report.applied and git(sleepy.root, "rev-parse", "HEAD") == head


def test_queued_action_is_reviewed_then_applied(sleepy: Store) -> None:
    mem = sleepy.write("Use the legacy deploy script deploy_v1.sh for hotfixes.", author="agent")
    sleepy.feedback([mem["id"]] * 3, "harmful", author="agent")
    report = Cycle(sleepy).run()
    assert [q["kind"] for q in report.queued] == ["archive"]
    assert sleepy.read(mem["id"])["meta"].get("status") is None
    (item,) = sleepy.proposals()
    sleepy.accept(item["id"], author="human")
    assert sleepy.read(mem["id"])["meta"]["status"] == "archived"
    assert sleepy.proposals() == []


def test_a_change_after_the_snapshot_is_never_overwritten(sleepy: Store) -> None:
    old = sleepy.write("The cache TTL for the search service is 300 seconds.", author="agent")
    time.sleep(1.1)
    sleepy.write("The cache TTL for the search service is 900 seconds.", author="agent", force=True)
    cycle = Cycle(sleepy)
    snap = cycle.snapshot()
    current = sleepy.read(old["id"])
    sleepy.edit(old["id"], "append", current["version"], text="Agreed with the SRE team.", author="agent")
    original = cycle.snapshot
    cycle.snapshot = lambda: snap  # type: ignore[method-assign]
    try:
        report = cycle.run()
    finally:
        cycle.snapshot = original  # type: ignore[method-assign]
    assert report.dropped and not report.applied
    assert "Agreed with the SRE team." in sleepy.read(old["id"])["content"]
    assert sleepy.read(old["id"])["meta"].get("status") is None


# letta-facts rows 0-2 (../shared/data/letta-facts): the facts, then per question (question, indices of
# its supporting facts, the fact that contradicts them)
LETTA = [
    (
        [
            "Nora Fishel is an accomplished violinist who has performed in orchestras across Europe.",
            "Joren Sullivar is a marine biologist specializing in coral reef restoration.",
            "Eliza Woodley is a published author known for her historical fiction novels.",
            "Suzanne Waggert is a renowned pastry chef who owns a bakery in Paris.",
            "Nora Fishel and Eliza Woodley collaborated on a charity event that combined music and "
            "literature.",
            "Joren Sullivar and Suzanne Waggert met during a culinary tour in the Mediterranean.",
            "Eliza Woodley and Suzanne Waggert co-host a podcast about creative careers.",
            "Nora Fishel and Joren Sullivar both attended the University of Edinburgh, though in different "
            "departments.",
            "Suzanne Waggert created a dessert inspired by one of Eliza Woodley's novels.",
            "Joren Sullivar once organized a beach cleanup event that Nora Fishel participated in.",
        ],
        [
            (
                "Which person collaborated with Eliza Woodley on a charity event that combined music and "
                "literature?",
                [4],
                "Joren Sullivar and Eliza Woodley collaborated on a charity event that combined music and "
                "literature.",
            ),
            (
                "Who created a dessert inspired by one of Eliza Woodley's novels?",
                [8],
                "Nora Fishel, inspired by Eliza Woodley's novels, created a dessert for a charity event, which "
                "was later featured in a Parisian bakery.",
            ),
            (
                "Who participated in a beach cleanup event organized by Joren Sullivar?",
                [9],
                "Joren Sullivar once organized a beach cleanup event that Eliza Woodley participated in.",
            ),
        ],
    ),
    (
        [
            "Rylan Gallaher is an accomplished landscape photographer.",
            "Jonn Coal is known for his expertise in environmental science.",
            "Rylan Gallaher and Jonn Coal collaborated on a documentary about climate change.",
            "Jonn Coal received an award for his research on renewable energy.",
            "Rylan Gallaher has exhibited his photography in several international galleries.",
            "Rylan Gallaher and Jonn Coal both attended the University of Oregon.",
            "Jonn Coal enjoys hiking and often explores new trails with Rylan Gallaher.",
            "Rylan Gallaher published a book featuring photographs of natural reserves studied by Jonn Coal.",
            "Jonn Coal and Rylan Gallaher co-founded a non-profit organization focused on conservation.",
            "Rylan Gallaher is fluent in Spanish, which helped during joint research trips with Jonn Coal "
            "to South America.",
        ],
        [
            (
                "Which university did both Rylan Gallaher and Jonn Coal attend?",
                [5],
                "Rylan Gallaher attended Stanford University, while Jonn Coal attended the University of "
                "Oregon.",
            ),
            (
                "Who published a book featuring photographs of natural reserves studied by Jonn Coal?",
                [7],
                "Jonn Coal published a book featuring photographs of natural reserves he studied, with "
                "contributions from Rylan Gallaher.",
            ),
            (
                "What is the area of expertise for Jonn Coal?",
                [1, 3],
                "Jonn Coal is known for his expertise in classical music composition.",
            ),
            (
                "Which language is Rylan Gallaher fluent in that aided joint research trips with Jonn Coal to "
                "South America?",
                [9],
                "Rylan Gallaher is fluent in Portuguese, which aided joint research trips with Jonn Coal to "
                "Brazil in South America.",
            ),
            (
                "What type of organization did Jonn Coal and Rylan Gallaher co-found?",
                [8],
                "Jonn Coal and Rylan Gallaher co-founded a for-profit tech startup specializing in landscape "
                "photography equipment.",
            ),
            (
                "In what field has Rylan Gallaher exhibited work in several international galleries?",
                [0, 4],
                "Rylan Gallaher is an accomplished sculptor and has exhibited his sculptures in several "
                "international galleries.",
            ),
            (
                "With whom does Jonn Coal often explore new hiking trails?",
                [6],
                "Jonn Coal often explores new hiking trails with his sister, not Rylan Gallaher.",
            ),
        ],
    ),
    (
        [
            "Theresa Bronn is a professional musician and conductor.",
            "Theresa Bronn has served as the conductor of the Kalamazoo Singers.",
            "Theresa Bronn is known for her work in choral music education.",
            "Theresa Bronn has directed numerous community and church choirs.",
            "Theresa Bronn has performed as a soprano soloist in various concerts.",
            "Theresa Bronn has been involved in music education for over two decades.",
            "Theresa Bronn has collaborated with other musicians and composers for special performances.",
            "Theresa Bronn has received recognition for her contributions to the arts in Michigan.",
            "Theresa Bronn has led workshops and clinics for aspiring choral directors.",
            "Theresa Bronn is passionate about promoting the importance of music in schools.",
        ],
        [
            (
                "Which Michigan-based arts contributor is Theresa Bronn recognized as?",
                [7],
                "Theresa Bronn has never lived or worked in Michigan and has not been involved in any "
                "arts-related activities in the state.",
            ),
            (
                "For which vocal ensemble has Theresa Bronn served as conductor?",
                [1],
                "Theresa Bronn has never conducted the Kalamazoo Singers but has instead served as the "
                "conductor of the Detroit Symphony Chorus.",
            ),
            (
                "What voice part has Theresa Bronn performed as a soloist in concerts?",
                [4],
                "Theresa Bronn has performed as a bass soloist in various concerts.",
            ),
            (
                "How long has Theresa Bronn been involved in music education?",
                [5],
                "Theresa Bronn only began her involvement in music education within the past year.",
            ),
            (
                "What is Theresa Bronn passionate about promoting in schools?",
                [9],
                "Theresa Bronn is passionate about promoting the importance of science and technology in "
                "schools.",
            ),
            (
                "With whom has Theresa Bronn collaborated for special performances?",
                [6],
                "Theresa Bronn has never collaborated with any other musicians or composers for special "
                "performances; she always performs solo.",
            ),
            (
                "What type of choirs has Theresa Bronn directed in her career?",
                [3],
                "Theresa Bronn has exclusively directed children's choirs throughout her career and has never "
                "worked with community or church choirs.",
            ),
            (
                "What kind of educational events has Theresa Bronn led for aspiring choral directors?",
                [8],
                "Theresa Bronn has never led any educational events or training sessions for aspiring choral "
                "directors.",
            ),
        ],
    ),
]


def test_letta_slice_pairs_contradicting_facts_with_the_facts_they_contradict(tmp_path: Path) -> None:
    """Issue 4, point 1 on a small slice (the full data set is bench/letta_contradictions.py): most pairs are
    found and right, no original fact supersedes another, a later fact that only adds to what is known
    supersedes nothing, the newer fact ranks where the older one did, and the older stays in its file and in
    git history."""
    root = tmp_path / "s"
    Store.init(root).close()
    originals: dict[str, str] = {}
    n = 0
    for r, (facts, _) in enumerate(LETTA):  # written one minute apart: a false pairing would be applied
        for f, fact in enumerate(facts):
            ref, stamp = f"fact-{r}-{f}", f"2026-01-01T{n // 60:02d}:{n % 60:02d}:00Z"
            (root / "memory" / f"{ref}.md").write_text(
                f"---\nid: {ref}\ncreated: '{stamp}'\nupdated: '{stamp}'\n---\n{fact}\n", encoding="utf-8"
            )
            originals[ref] = fact
            n += 1
    store = Store(root, embedder=HashEmbedder())
    store.sync()
    corrections = [(r, q, sup, c) for r, (_, qs) in enumerate(LETTA) for q, sup, c in qs]
    additions = [
        "Theresa Bronn also teaches piano lessons to children on weekends.",
        "Joren Sullivar recently published a field guide to Mediterranean coral species.",
    ]
    ids = store.write_many(
        [{"content": c} for *_, c in corrections] + [{"content": a} for a in additions], author="agent"
    )
    expected = {ids[k]: {f"fact-{r}-{s}" for s in sup} for k, (r, _, sup, _) in enumerate(corrections)}

    report = Cycle(store).run()
    applied = {a["data"]["new"]: a["data"]["old"] for a in report.applied if a["kind"] == "supersede"}
    assert set(applied) <= set(expected), applied  # no original and no mere addition supersedes anything
    pairs = {n: o for n, o in applied.items() if o in expected[n]}
    # the hashing embedder is cruder than MiniLM: one borderline pair may go to the wrong fact of the person
    assert len(applied) - len(pairs) <= 1, applied
    assert len(pairs) >= 12, f"{len(pairs)} of {len(corrections)} pairs found"  # 13 today

    for k, (_, question, _, _) in enumerate(corrections):
        if ids[k] not in pairs:
            continue
        old = pairs[ids[k]]
        hits = [h["id"] for h in store.search(question, limit=10)["hits"]]
        assert ids[k] in hits and old not in hits, (question, hits)
        every = [h["id"] for h in store.search(question, limit=10, include_archived=True)["hits"]]
        assert old not in every or every.index(ids[k]) < every.index(old), (question, every)
        kept = store.read(old)
        assert originals[old] in kept["content"] and kept["meta"]["superseded_by"] == ids[k]
        assert originals[old] in git(root, "log", "-p", "--format=", "--", f"memory/{old}.md")
    assert Cycle(store).run().counts().get("supersede") is None  # settled: a second cycle pairs nothing new


def planned(
    memories: list[tuple[str, str]], gram: list[list[float]], since: str = ""
) -> dict[tuple[str, str], bool]:
    """The supersedes that plan() proposes with the default thresholds, {(newer, older): sure}, for memories
    (text, created) whose vectors have the cosines of `gram` (measured with all-MiniLM-L6-v2 on the text), in
    a cycle that looks at the memories created at `since` or later."""
    rows = [
        Row(k, f"m{k}", "memory", "", text, "note", [], "active", "", at, at, 0, 0, "v", text + "\n", [])
        for k, (text, at) in enumerate(memories)
    ]
    vectors = np.linalg.cholesky(np.array(gram, dtype=np.float64)).astype(np.float32)
    snap = Snapshot(None, rows, vectors, {k for k, (_, at) in enumerate(memories) if at >= since}, {})
    return {
        (memories[int(a.data["new"][1:])][0], memories[int(a.data["old"][1:])][0]): a.sure
        for a in plan(snap, Thresholds())
        if a.kind == "supersede"
    }


def test_default_thresholds_supersede_a_coding_memory_with_its_correction_only() -> None:
    """The default weights and thresholds (fitted on letta's people) on a coding agent's memories: another
    value, a "no longer" and a "not" supersede what they correct; a newer memory about the same API that
    corrects nothing supersedes nothing and is not even queued."""
    d1, d2, d3 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"
    memories = [
        ("The API runs on port 8080.", d1),
        ("The API runs on Kubernetes in the staging cluster.", d2),
        ("The API runs on port 9090.", d3),
        ("The catalog service caches responses for 300 seconds.", d1),
        ("The catalog service no longer caches responses.", d2),
        ("Use npm to install the web app's dependencies.", d1),
        ("Use pnpm, not npm, to install the web app's dependencies.", d2),
    ]
    gram = [
        [1.0, 0.5, 0.84, 0.21, 0.21, 0.25, 0.18],
        [0.5, 1.0, 0.49, 0.23, 0.19, 0.15, 0.1],
        [0.84, 0.49, 1.0, 0.23, 0.22, 0.22, 0.18],
        [0.21, 0.23, 0.23, 1.0, 0.79, -0.03, -0.11],
        [0.21, 0.19, 0.22, 0.79, 1.0, 0.0, -0.06],
        [0.25, 0.15, 0.22, -0.03, 0.0, 1.0, 0.92],
        [0.18, 0.1, 0.18, -0.11, -0.06, 0.92, 1.0],
    ]
    text = [t for t, _ in memories]
    assert planned(memories, gram) == {
        (text[2], text[0]): True,
        (text[4], text[3]): True,
        (text[6], text[5]): True,
    }


def test_a_correction_is_paired_with_an_older_memory_beyond_its_ten_nearest() -> None:
    """letta-facts row 2: the older fact, seen by an earlier cycle, is only the thirteenth nearest of its
    correction (cosine 0.60): memories about other people that say nearly the same words are nearer. The
    correction still finds what it corrects."""
    new = (
        "Theresa Bronn has never led any educational events or training sessions for aspiring choral "
        "directors."
    )
    old = "Theresa Bronn has led workshops and clinics for aspiring choral directors."
    firsts = "Ann Bea Cal Dee Eve Fay Gus Hal Ida Jon Kai Lou".split()
    lasts = "Ames Bell Cole Dunn Ellis Ford Gray Hart Ives Judd Kerr Lowe".split()
    others = [
        f"{first} {last} leads training sessions for aspiring choral directors."
        for first, last in zip(firsts, lasts, strict=True)
    ]
    memories = [(new, "2026-01-02T00:00:00Z"), (old, "2026-01-01T00:00:00Z")]
    memories += [(text, "2026-01-01T00:00:00Z") for text in others]
    n = len(memories)
    gram = [[1.0 if a == b else 0.64 for b in range(n)] for a in range(n)]  # the others: 0.8 from the new one
    for k in range(2, n):
        gram[0][k] = gram[k][0] = 0.8
    gram[0][1] = gram[1][0] = 0.6
    for k in range(2, n):
        gram[1][k] = gram[k][1] = 0.48
    assert planned(memories, gram, since="2026-01-02T00:00:00Z") == {(new, old): True}


def test_a_denial_supersedes_the_memory_whose_claim_it_denies() -> None:
    """A negation is far from what it negates in meaning, and a correction word alone does not say which of a
    subject's memories it corrects: the words it denies do ("never [traveled]", "no longer [retries]").
    Cosines measured with all-MiniLM-L6-v2; letta-facts row 58 and a coding agent's memory."""
    d1, d2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    memories = [
        ("Anjel Huyen has never traveled outside of Vietnam.", d2),
        ("Anjel Huyen enjoys traveling and has visited over 15 countries.", d1),
        ("Anjel Huyen enjoys hiking and has climbed Mount Fansipan in Vietnam.", d1),
        ("The worker no longer retries failed jobs; it sends them to the dead-letter queue.", d2),
        ("The worker retries failed jobs three times.", d1),
        ("The worker logs failed jobs to Sentry.", d1),
    ]
    gram = [
        [1.0, 0.48, 0.47, 0.06, 0.1, 0.11],
        [0.48, 1.0, 0.61, -0.02, 0.1, 0.12],
        [0.47, 0.61, 1.0, -0.04, 0.01, 0.03],
        [0.06, -0.02, -0.04, 1.0, 0.66, 0.58],
        [0.1, 0.1, 0.01, 0.66, 1.0, 0.52],
        [0.11, 0.12, 0.03, 0.58, 0.52, 1.0],
    ]
    text = [t for t, _ in memories]
    assert planned(memories, gram, since=d2) == {(text[0], text[1]): True, (text[3], text[4]): True}
    assert dict(denied(text[0])) == {"travel": 1.0, "outside": 0.75, "vietnam": 0.5}
    assert dict(denied("It doesn't run on port 8080 any more, and never did.")) == {
        "run": 1.0,
        "port": 0.75,
        "8080": 0.5,
        "did": 1.0,
    }
    assert denied("The worker retries failed jobs three times.") == ()


def test_a_liking_turned_around_supersedes_the_liking_it_turns() -> None:
    """ "Dislikes spending time outdoors" shares no word with "enjoys hiking", and "dislikes" alone does not say
    which of a person's memories it corrects: the liking it turns around does. Where the person has a second
    liking (jazz), the pass is not sure which one is turned and asks a person; it never picks the jazz.
    Cosines measured with all-MiniLM-L6-v2; letta-facts rows of the dev part."""
    d1, d2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    memories = [
        (
            "Colton Jorves dislikes spending time outdoors and prefers indoor activities such as playing chess.",
            d2,
        ),
        ("Colton Jorves enjoys hiking and birdwatching in national parks.", d1),
        ("Colton Jorves enjoys jazz and plays the saxophone in a local band.", d1),
        ("Colton Jorves works as a structural engineer in Denver.", d1),
        ("Brion Lang has a strong aversion to outdoor activities and prefers reading and playing chess.", d2),
        ("Brion Lang might enjoy outdoor activities such as hiking or cycling.", d1),
    ]
    gram = [
        [1.0, 0.63, 0.55, 0.44, 0.46, 0.3],
        [0.63, 1.0, 0.61, 0.52, 0.26, 0.37],
        [0.55, 0.61, 1.0, 0.5, 0.27, 0.3],
        [0.44, 0.52, 0.5, 1.0, 0.05, 0.12],
        [0.46, 0.26, 0.27, 0.05, 1.0, 0.83],
        [0.3, 0.37, 0.3, 0.12, 0.83, 1.0],
    ]
    text = [t for t, _ in memories]
    assert planned(memories, gram, since=d2) == {(text[0], text[1]): False, (text[4], text[5]): True}
    alone = [memories[0], memories[1], memories[3]]
    assert planned(alone, [[gram[i][j] for j in (0, 1, 3)] for i in (0, 1, 3)], since=d2) == {
        (text[0], text[1]): True
    }
    assert [stance(t) for t in text] == [-1, 1, 1, 0, -1, 1]
    assert stance("Colton doesn't like hiking.") == -1
    assert stance("Colton used to dislike hiking but now enjoys it.") == 0  # both: no clear side


def test_a_long_cycle_lets_a_writer_in_between_its_parts(
    sleepy: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle holds the store lock for one part of its plan at a time (HOLD seconds), one commit each: a
    write that arrives meanwhile waits for the part, not for the whole cycle."""
    import threading

    from somna.sleep import cycle as cycle_module

    topics = [
        "Postgres",
        "Redis",
        "Kafka",
        "Nginx",
        "Celery",
        "Sentry",
        "Grafana",
        "Vault",
        "Consul",
        "Envoy",
    ]
    for name in topics:  # pairs of related memories: a link each way to apply
        sleepy.write(f"The {name} service for billing runs in the eu-west-1 cluster.", author="agent")
        sleepy.write(
            f"The {name} service for billing is deployed by the ops team.", author="agent", force=True
        )
    monkeypatch.setattr(cycle_module, "HOLD", 0.0)  # one action a part
    slow, started, done = Cycle._dispatch, [], []

    def dispatch(self: Cycle, action: object) -> None:
        if not started:
            started.append(time.monotonic())
            threading.Thread(target=writer, daemon=True).start()
        time.sleep(0.1)
        slow(self, action)

    def writer() -> None:
        other = Store(sleepy.root, embedder=HashEmbedder())
        try:
            other.write("Written during the cycle: the cache warms up in 90 s.", author="agent-b")
            done.append(time.monotonic())
        finally:
            other.close()

    monkeypatch.setattr(Cycle, "_dispatch", dispatch)
    report = Cycle(sleepy).run()
    ended = time.monotonic()
    applied = len(report.applied)
    assert applied >= 10 and done, report.counts()
    assert done[0] - started[0] < 0.1 * applied / 2 and done[0] < ended  # in between, not after the cycle
    log = git(sleepy.root, "log", "--format=%an|%s").splitlines()
    at = next(i for i, line in enumerate(log) if line.startswith("agent-b|write"))
    assert log[at + 1].startswith("somna-sleep|sleep cycle: 1 ") and log[at + 1].endswith("(part 1)")
    assert log[0].endswith(f"(part {applied + len(report.queued)})")  # the cycle went on after the write
    assert "warms up" in sleepy.search("cache warms up")["hits"][0]["snippet"]


def test_unknown_or_malformed_thresholds_are_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store.init(root).close()
    for bad, said in (
        ("duplicat = 0.8", "sleep.thresholds has no 'duplicat'; known: duplicate,"),
        ("neighbours = 2.5", "sleep.thresholds.neighbours must be a whole number"),
    ):
        (root / "somna.toml").write_text(f"[sleep.thresholds]\n{bad}\n", encoding="utf-8")
        out = somna("--store", str(root), "sleep", "--dry-run")
        assert out.returncode != 0 and said in out.stderr and "Traceback" not in out.stderr, out.stderr
