"""The exam and the gate: what memory must still answer, and a cycle that drops what would lose it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import git, mcp_client, somna

from somna.app import open_store
from somna.embeddings import HashEmbedder
from somna.errors import InvalidInput
from somna.proposals import sleep_proposal
from somna.sleep import exam, gate
from somna.sleep.actions import Action
from somna.sleep.cycle import Cycle
from somna.store import Store

API = "Local Postgres for api is on 5433 (5432 is used by the analytics container)"
ANALYTICS = "The analytics container's Postgres listens on port 5432 and is read-only for the api service"
NODE_20 = "The frontend builds use Node 20."
NODE_22 = "Frontend builds now use Node 22."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "s", embedder=HashEmbedder(), create=True)


def supersede(store: Store, old: dict[str, Any], new: dict[str, Any]) -> Action:
    versions = {ref: store.read(ref)["version"] for ref in (old["id"], new["id"])}
    return Action(
        "supersede", f"{new['id']} replaces {old['id']}", versions, {}, {"old": old["id"], "new": new["id"]}
    )


def test_probes_ask_for_each_memorys_details_without_naming_them(store: Store) -> None:
    api = store.write(API, author="agent")
    probes = [p for p in exam.probes_of(store) if p.about == api["id"]]
    assert {p.expect for p in probes} == {("5433",), ("5432",)}
    assert all("5433" not in p.query and "5432" not in p.query and "postgres" in p.query for p in probes)
    assert exam.score(exam.run(store, probes)) == 1.0


def test_a_derived_question_is_the_same_in_every_process() -> None:
    """A detail that holds another ("uv sync --group dev" holds "--group") is taken out whole, whatever order
    the details come in: two processes of one store derive the same probes, and a gate's verdict does not
    depend on which process asks."""
    text = "Run `uv sync --group dev` before pytest; Python 3.12.4 (see https://docs.astral.sh/uv/)"
    code = f"from somna.sleep import exam; print(exam._question({text!r}, '3.12.4'))"
    asked = {
        subprocess.run(
            [sys.executable, "-c", code], env=os.environ | {"PYTHONHASHSEED": str(seed)},
            capture_output=True, text=True, check=True,
        ).stdout
        for seed in range(6)
    }  # fmt: skip
    assert asked == {"run before pytest python see\n"}


def test_an_update_keeps_its_question_answered_a_wrong_successor_does_not() -> None:
    assert exam.updated(NODE_20, NODE_22, "20")
    assert exam.updated("The API runs on port 8080.", "The API now runs on port 9090.", "8080")
    assert not exam.updated(API, ANALYTICS, "5433")  # another subject: the analytics container's port
    assert not exam.updated(
        "Unit tests time out after 10 minutes.", "Integration tests use Python 3.12.", "10"
    )


def test_the_gate_drops_what_loses_an_answer_and_lets_a_real_update_land(store: Store) -> None:
    api = store.write(API, author="agent")
    analytics = store.write(ANALYTICS, author="agent", force=True)
    redis = store.write("Redis for the api runs on localhost:6379, db 0.", author="agent")
    node20 = store.write(NODE_20 + " Run `nvm use` first.", author="agent")
    time.sleep(1.1)  # created stamps have a resolution of one second
    node22 = store.write(NODE_22, author="agent", force=True)
    versions = {redis["id"]: redis["version"]}
    stale = Action("archive", "planted: archive the only memory that knows the Redis port", versions)
    planted = [supersede(store, api, analytics), supersede(store, node20, node22), stale]

    report = Cycle(store, extra_passes=[lambda cycle, snap: planted], policy={"archive": "apply"}).run()

    assert store.read(api["id"])["meta"].get("status") is None  # the wrong supersede never landed
    (wrong,) = [d for d in report.dropped if d["data"].get("old") == api["id"]]
    assert "does not update what" in wrong["why"]
    assert store.read(redis["id"])["meta"].get("status") is None  # the archive lost an answer: dropped
    (lost,) = [d for d in report.dropped if d["kind"] == "archive"]
    assert "the exam: probe" in lost["why"] and "6379" in lost["why"]
    assert store.read(node20["id"])["meta"]["status"] == "superseded"  # the update landed...
    kept = store.read(node22["id"])["content"]
    assert "22" in kept and "nvm use" in kept and "Node 20" not in kept  # ...carrying what it did not say
    assert report.exam["probes"] > 0 and "exam:" in report.markdown()
    hits = store.search("which port does the api service's local postgres use")["hits"]
    assert any("5433" in store.read(h["id"])["content"] for h in hits[:3])


def test_an_answer_that_only_a_look_alike_still_holds_is_lost(store: Store) -> None:
    """A wrong supersede of the unit tests' per-test timeout (10 s) by the integration tests' (120 s): after it,
    "10" is still found, but in the CI job's "timeout-minutes: 10", a look-alike. That is no answer."""
    unit = store.write("ledger-api unit tests run under pytest-timeout with --timeout=10 seconds per test.",
                       author="agent")  # fmt: skip
    store.write("ledger-api's `unit` CI job has timeout-minutes: 10; if it hits that, something is hanging.",
                author="agent", force=True)  # fmt: skip
    time.sleep(1.1)
    integration = store.write(
        "ledger-api integration tests now run with a per-test --timeout=120.", author="agent", force=True
    )
    probe = exam.Probe("ledger api unit tests run under pytest timeout with seconds per test", ("10",), "store",
                       unit["id"])  # fmt: skip
    before = exam.Outcome(probe, True, unit["id"], 1, [unit["id"]])
    after = exam.Outcome(probe, True, "the-ci-job", 2, [integration["id"], "the-ci-job"])
    (lost,) = exam.regressions([before], [after], store, {unit["id"]: integration["id"]})
    assert lost.stranger and "a look-alike" in lost.why()
    # what replaced it answering is no look-alike (an intended update is judged on its own: see above)
    assert not exam.regressions([before], [exam.Outcome(probe, True, integration["id"], 1, [integration["id"]])],
                                store, {unit["id"]: integration["id"]})  # fmt: skip

    report = Cycle(store, extra_passes=[lambda cycle, snap: [supersede(store, unit, integration)]]).run()
    assert store.read(unit["id"])["meta"].get("status") is None
    assert [d["data"]["old"] for d in report.dropped] == [unit["id"]]


def test_a_fact_denied_by_a_later_one_about_the_same_person_is_superseded_and_not_carried(
    store: Store,
) -> None:
    old = store.write("Anjel Huyen enjoys traveling and has visited over 15 countries.", author="agent")
    time.sleep(1.1)
    new = store.write("Anjel Huyen has never traveled outside of Vietnam.", author="agent", force=True)
    report = Cycle(store, extra_passes=[lambda cycle, snap: [supersede(store, old, new)]]).run()
    assert not report.dropped, report.dropped
    assert store.read(old["id"])["meta"]["status"] == "superseded"
    assert "15 countries" not in store.read(new["id"])["content"]  # what the newer denies is not carried


def test_a_persons_probe_is_ground_truth(store: Store) -> None:
    node20 = store.write(NODE_20, author="agent")
    time.sleep(1.1)
    node22 = store.write(NODE_22, author="agent", force=True)
    (store.root / "exams").mkdir()
    (store.root / "exams" / "node.yaml").write_text(
        '- query: which node version do frontend builds use\n  expect: "20"\n'
    )
    verdict = gate.check(store, [supersede(store, node20, node22)])
    assert verdict.kept == [] and "which node version" in verdict.dropped[0][1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("query: [unclosed", "cannot be read"),
        ("just a string", "expected a list of probes"),
        ("- expect: '5433'", "needs a `query`"),
        ("- query: api port", "needs `expect`"),
    ],
)
def test_a_malformed_exam_file_is_a_clear_error(store: Store, text: str, message: str) -> None:
    (store.root / "exams").mkdir()
    (store.root / "exams" / "bad.yaml").write_text(text)
    with pytest.raises(exam.ExamError, match=message) as err:
        exam.written(store.root)
    assert "exams/bad.yaml" in str(err.value)


def test_a_probe_whose_memory_was_deleted_by_hand_is_not_asked(store: Store) -> None:
    mem = store.write(API, author="agent")
    (store.root / "memory" / f"{mem['id']}.md").unlink()
    store.sync()
    assert [p for p in exam.probes_of(store) if p.about == mem["id"]] == []


def test_staging_leaves_the_store_as_it_was(store: Store) -> None:
    api = store.write(API, author="agent")
    analytics = store.write(ANALYTICS, author="agent", force=True)
    head = git(store.root, "rev-parse", "HEAD")
    with gate.staging(store) as stage:
        stage.edit(api["id"], "archive", stage.read(api["id"])["version"], author="test")
        assert stage.read(api["id"])["meta"]["status"] == "archived"
        staged_root = stage.root
    assert not staged_root.exists()
    assert (
        git(store.root, "rev-parse", "HEAD") == head and store.read(api["id"])["meta"].get("status") is None
    )
    assert store.read(analytics["id"])["version"] == analytics["version"]


KILLED_CYCLE = """
import os, signal, sys
from pathlib import Path
from somna.app import open_store
from somna.embeddings import HashEmbedder
from somna.errors import InvalidInput
from somna.proposals import sleep_proposal
from somna.sleep import exam
from somna.sleep.cycle import Cycle
from somna.sleep.actions import Action
store = open_store(Path(sys.argv[1]), embedder=HashEmbedder())
old, new = sys.argv[2], sys.argv[3]
versions = {ref: store.read(ref)["version"] for ref in (old, new)}
planted = [Action("supersede", "planted", versions, {}, {"old": old, "new": new})]
real_run = exam.run
calls = []
def run(s, probes, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the exam on the staging copy: the plan is applied there, not yet here
        os.kill(os.getpid(), signal.SIGKILL)
    return real_run(s, probes, *args, **kwargs)
exam.run = run
Cycle(store, extra_passes=[lambda cycle, snap: planted]).run()
"""


def test_a_cycle_killed_between_staging_and_landing_changes_nothing(store: Store) -> None:
    old = store.write(NODE_20, author="agent")
    time.sleep(1.1)
    new = store.write(NODE_22, author="agent", force=True)
    head = git(store.root, "rev-parse", "HEAD")
    before = {p.name: p.read_text() for p in (store.root / "memory").glob("*.md")}
    store.close()
    staged = set(Path(tempfile.gettempdir()).glob("somna-staging-*"))
    argv = [sys.executable, "-c", KILLED_CYCLE, str(store.root), old["id"], new["id"]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == -9, proc.stderr
    after = open_store(store.root, embedder=HashEmbedder())
    assert git(after.root, "rev-parse", "HEAD") == head
    assert {p.name: p.read_text() for p in (after.root / "memory").glob("*.md")} == before
    assert git(after.root, "status", "--porcelain") == ""
    left = [p for p in set(Path(tempfile.gettempdir()).glob("somna-staging-*")) - staged if p.is_dir()]
    assert left  # the killed cycle's staging copy; the next trial sweeps it once it is old
    for folder in left:
        os.utime(folder, (time.time() - gate.STALE - 60,) * 2)
    with gate.staging(after):
        pass
    assert not [p for p in left if p.exists()]


@pytest.mark.anyio
async def test_a_query_whose_hit_an_agent_found_helpful_becomes_a_probe(tmp_path: Path) -> None:
    root = tmp_path / "s"
    assert somna("init", str(root)).returncode == 0
    async with mcp_client(root) as s:
        written = (await s.call_tool("write", {"content": API})).structured_content
        assert written is not None
        found = (await s.call_tool("search", {"query": "api postgres port"})).structured_content
        assert found is not None and found["hits"][0]["id"] == written["id"]
        done = await s.call_tool("feedback", {"ids": [written["id"]], "signal": "helpful"})
        assert not done.is_error
    store = open_store(root, embedder=HashEmbedder())
    (probe,) = exam.learned(store)
    assert probe.query == "api postgres port" and probe.about == written["id"] and probe.source == "use"
    assert exam.run(store, [probe])[0].passed


def test_somna_exam_adds_a_persons_probe_runs_them_and_says_what_fails(tmp_path: Path) -> None:
    root = str(tmp_path / "s")
    assert somna("init", root).returncode == 0
    assert somna("--store", root, "add", API).returncode == 0
    added = somna(
        "--store", root, "exam", "--add", "which port does the api's local postgres use", "--expect", "5433"
    )
    assert added.returncode == 0 and "exams/probes.yaml" in added.stdout
    assert "human|exam: a probe" in git(Path(root), "log", "--format=%an|%s", "-1")
    ok = somna("--store", root, "exam")
    assert ok.returncode == 0 and "3/3 probes pass" in ok.stdout and "1 person" in ok.stdout, ok.stdout
    somna("--store", root, "exam", "--add", "which redis db do sessions use", "--expect", "db 7")
    failing = somna("--store", root, "exam")
    assert failing.returncode == 1 and "FAIL [person] 'which redis db do sessions use'" in failing.stdout
    (Path(root) / "exams" / "broken.yaml").write_text("- query: [unclosed\n")
    broken = somna("--store", root, "exam")
    assert broken.returncode == 1 and "exams/broken.yaml cannot be read" in broken.stderr


def test_a_persons_accept_asks_the_exam_first_and_may_be_forced(store: Store) -> None:
    deploy = store.write("Deploy with `make deploy ENV=prod` from the release branch.", author="agent")
    other = store.write("Deploys go out from the release branch after review.", author="agent", force=True)
    versions = {deploy["id"]: deploy["version"], other["id"]: other["version"]}
    merge = Action("merge", "planted: a merge that drops the command", versions, {},
                   {"text": "Deploys go out from the release branch after review.\n"})  # fmt: skip
    pid = store.queue.add(sleep_proposal(merge.to_json(), author="somna-sleep"), "sleep proposes merge")
    with pytest.raises(InvalidInput, match="would lose an answer.*make deploy"):
        store.accept(pid, author="human")
    assert store.read(deploy["id"])["meta"].get("status") is None and store.proposals()
    store.accept(pid, author="human", force=True)
    assert store.read(deploy["id"])["meta"]["status"] == "archived" and store.proposals() == []
