"""The LLM passes over real HTTP: litellm talks to a small OpenAI-compatible server on 127.0.0.1 that each
test starts, with the answers the test chooses. Nothing here leaves the machine."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import call, git, git_changes, mcp_client, somna

from somna.app import open_store
from somna.embeddings import HashEmbedder
from somna.errors import InvalidInput
from somna.index import Index
from somna.sleep.cycle import Cycle
from somna.sleep.llm import llm_passes
from somna.sleep.llm_client import LLMConfig
from somna.store import Store

KEY_ENV = "SOMNA_TEST_LLM_KEY"
KEY = "dummy-key-for-the-stub"
SECRET = "ghp_x7Kq2LmN9pR4sT6vW8yZ1aB3cD5eF7gH9jK2"
# The hashing embedder is cruder than MiniLM: paraphrases score lower, so the thresholds are set for it.
THRESHOLDS = "[sleep.thresholds]\nduplicate = 0.55\ncontradiction = 0.5\nsure = 0.99\nlink = 0.45\n"


class StubLLM:
    """`POST /v1/chat/completions` on 127.0.0.1: answers with `reply(request)`, counts requests, can be slow."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.reply: Callable[[dict[str, Any]], str] = lambda body: '{"memories": []}'
        self.delay = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                stub.requests.append(body)
                stub.auth.append(self.headers.get("Authorization"))
                if stub.delay:
                    time.sleep(stub.delay)
                content = stub.reply(body)
                prompt = sum(len(m["content"]) for m in body["messages"]) // 4
                out = json.dumps(
                    {
                        "id": f"chatcmpl-{len(stub.requests)}",
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


def user_text(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def lessons(*items: tuple[str, str, str]) -> str:
    return json.dumps(
        {
            "memories": [
                {"type": t, "title": title, "content": c, "tags": ["Testing"]} for t, title, c in items
            ]
        }
    )


@pytest.fixture
def stub() -> Iterator[StubLLM]:
    s = StubLLM()
    yield s
    s.close()
    _close_stray_loop()


def _close_stray_loop() -> None:
    """litellm's sync completion asks asyncio.get_event_loop() for a loop, which leaves a new, never closed loop on
    the calling thread; close it, or its collection at the end of the session is an unraisable ResourceWarning
    (an error here) that fails the run after every test has passed."""
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = policy.get_event_loop()
        except RuntimeError:
            return
    if not loop.is_running():
        loop.close()
        policy.set_event_loop(None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_store(
    root: Path,
    stub: StubLLM,
    monkeypatch: pytest.MonkeyPatch,
    *,
    model: str = "openai/somna-test",
    extra: str = "",
    **llm: Any,
) -> Store:
    monkeypatch.setenv(KEY_ENV, KEY)
    Store.init(root).close()
    lines = [f'model = "{model}"', f'api_base = "{stub.base}"', f'api_key_env = "{KEY_ENV}"', "timeout = 20"]
    lines += [f"{k} = {v!r}" for k, v in llm.items()]
    (root / "somna.toml").write_text(
        THRESHOLDS + extra + "\n[llm]\n" + "\n".join(lines) + "\n", encoding="utf-8"
    )
    store = open_store(root, embedder=HashEmbedder())
    store.sync()  # commits somna.toml, as a person editing it would
    return store


def cycle(store: Store) -> Any:
    return Cycle(store, extra_passes=llm_passes(store)).run()


def claude_transcript(path: Path) -> None:
    """A Claude Code session file: one JSON object per line, tool calls and results as content blocks."""
    lines = [
        {"type": "summary", "summary": "Fixing the flaky payment tests"},
        {
            "type": "user",
            "message": {
                "role": "user",
                "content": f"The payment tests time out again. My token is {SECRET} if you need the API.",
            },
        },
        {
            "type": "assistant",
            "message": {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Running them with a timeout."},
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "Bash",
                        "input": {"command": "pytest -x tests/payments"},
                    },
                ],
            },
        },
        {
            "type": "user",
            "message": {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "is_error": True,
                        "content": "FAILED tests/payments/test_refund.py - TimeoutError after 30 s",
                    }
                ],
            },
        },
        {
            "type": "assistant",
            "message": {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "The sandbox needs PAYMENTS_SANDBOX=1 and a 120 s timeout."}
                ],
            },
        },
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")


# -- configuration ------------------------------------------------------------------------------------
def test_no_llm_section_no_passes_and_no_litellm(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store.init(root).close()
    code = (
        "import sys; from pathlib import Path; from somna.store import Store; from somna.sleep.llm import "
        f"llm_passes; assert llm_passes(Store(Path({str(root)!r}))) == []; print('litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
    report = somna("--store", str(root), "sleep", "--once")
    assert report.returncode == 0 and "LLM tokens 0" in report.stdout, report.stderr


def test_config_is_checked(tmp_path: Path) -> None:
    (tmp_path / "somna.toml").write_text('[llm]\nmodel = "openai/x"\napi_key = "sk-nope"\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match="never put a key"):
        LLMConfig.load(tmp_path)
    (tmp_path / "somna.toml").write_text(
        '[llm]\nmodel = "openai/x"\nmax_tokens_per_cycle = -5\n', encoding="utf-8"
    )
    with pytest.raises(InvalidInput, match="max_tokens_per_cycle"):
        LLMConfig.load(tmp_path)
    (tmp_path / "somna.toml").write_text(
        '[llm]\nmodel = "openai/x"\nmax_cost_per_cycle = 0.5\n', encoding="utf-8"
    )
    cfg = LLMConfig.load(tmp_path)
    assert (
        cfg is not None and cfg.model == "openai/x" and cfg.max_cost_per_cycle == 0.5 and cfg.api_base is None
    )


# -- (a) a transcript becomes memories -------------------------------------------------------------------
def test_transcript_becomes_memories(tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch)
    known = store.write(
        "Run the payment tests with pytest -x so the run stops at the first failure.", author="agent"
    )
    same = store.write(
        "Deploy previews are built by the preview workflow on every pull request.", author="agent"
    )
    claude_transcript(store.root / "inbox" / "session-1.jsonl")
    stub.reply = lambda body: lessons(
        (
            "fix",
            "Payment tests need the sandbox flag",
            "The payment tests time out after 30 s unless PAYMENTS_SANDBOX=1 is set; give them a 120 s timeout.",
        ),
        (
            "lesson",
            "Run payment tests with pytest -x",
            "Run the payment tests with pytest -x so the run stops at the first failure. Use the path tests/payments.",
        ),
        (
            "fact",
            "Deploy previews",
            "Deploy previews are built by the preview workflow on every pull request.",
        ),
    )
    report = cycle(store)

    (request,) = stub.requests
    sent = user_text(request)
    assert "[tool Bash]" in sent and "[result ERROR]" in sent and "Fixing the flaky payment tests" in sent
    assert SECRET not in json.dumps(request) and "[REDACTED:github_token]" in sent  # never sent to the model
    assert stub.auth == [f"Bearer {KEY}"] and request["model"] == "somna-test"
    hits = store.search("payment tests sandbox timeout")["hits"]
    new = store.read(hits[0]["id"])
    assert "PAYMENTS_SANDBOX=1" in new["content"] and new["meta"]["type"] == "lesson"
    assert set(new["meta"]["tags"]) == {"fix", "testing"} and new["meta"]["source"] == "somna-sleep"
    # the near-duplicate got only its new detail; the exact duplicate changed nothing
    assert store.read(known["id"])["content"].endswith("Use the path tests/payments.\n")
    assert store.read(same["id"])["version"] == same["version"]
    assert sorted(a["kind"] for a in report.applied) == ["extract", "extract", "inbox"], report.markdown()
    assert not (store.root / "inbox" / "session-1.jsonl").exists()
    assert (store.root / "inbox" / "processed" / "session-1.jsonl").is_file()
    log = git(store.root, "log", "--format=%an|%s")
    assert log.splitlines()[0] == "somna-sleep|sleep cycle: 2 extract, 1 inbox"
    assert f"memory/{hits[0]['id']}.md" in git(store.root, "ls-files")
    assert report.tokens > 0 and f"LLM tokens {report.tokens}" in report.markdown()
    cycle(store)  # processed transcripts are not read again
    assert not any("Transcript (" in user_text(r) for r in stub.requests[1:])


# -- (b) garbage changes nothing ----------------------------------------------------------------------
GARBAGE = {
    "not json": f"Sure! Here is what I learned: always use {SECRET} for the API.",
    "wrong shape": json.dumps([{"title": "a bare list", "content": f"token {SECRET}"}]),
    "wrong fields": json.dumps({"memories": [{"type": "lesson", "title": "no content", "secret": SECRET}]}),
    "empty": "",
    "huge": json.dumps({"memories": [{"type": "fact", "title": "x", "content": "y" * 50_000, "tags": []}]}),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_answer_changes_nothing(
    kind: str,
    tmp_path: Path,
    stub: StubLLM,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch)
    store.write("The staging database is db-staging.internal on port 5433.", author="agent")
    (store.root / "inbox" / "notes.md").write_text(
        "We learned that builds need --frozen.\n", encoding="utf-8"
    )
    head = git(store.root, "rev-parse", "HEAD")
    stub.reply = lambda body: GARBAGE[kind]
    with caplog.at_level(logging.WARNING, logger="somna.sleep.llm"):
        report = cycle(store)
    assert len(stub.requests) == 1
    assert git(store.root, "rev-parse", "HEAD") == head and git(store.root, "status", "--porcelain") == ""
    assert store.index.count() == 3 and not report.applied  # one memory and the two blocks, as before
    assert (store.root / "inbox" / "notes.md").is_file()
    (note,) = [n for n in report.notes if "unusable LLM answer" in n]
    assert "extract inbox/notes.md" in note and "nothing changed" in note
    assert any("unusable LLM answer" in r.getMessage() for r in caplog.records)
    assert (
        SECRET not in caplog.text and SECRET not in report.markdown() and "y" * 100 not in report.markdown()
    )


def test_a_transcript_that_keeps_failing_is_set_aside(
    tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch)
    (store.root / "inbox" / "notes.txt").write_text("Builds need --frozen.\n", encoding="utf-8")
    stub.reply = lambda body: "no"
    for _ in range(3):
        report = cycle(store)
    assert len(stub.requests) == 3 and [a["kind"] for a in report.applied] == ["inbox"]
    assert (store.root / "inbox" / "processed" / "notes.txt").is_file()
    assert store.index.count() == 2


# -- (c) the budget stops a cycle -------------------------------------------------------------------------
def test_token_budget_stops_the_cycle(tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch, max_tokens_per_cycle=450)
    for n in range(3):
        (store.root / "inbox" / f"t{n}.md").write_text(
            f"Session {n}: builds of service {n} need --frozen.\n", encoding="utf-8"
        )
    stub.reply = lambda body: lessons(
        (
            "lesson",
            f"Frozen builds {len(stub.requests)}",
            f"Builds of service {len(stub.requests)} need the --frozen flag.",
        )
    )
    report = cycle(store)
    assert len(stub.requests) == 1 < 3
    assert any(n.startswith("budget spent (max_tokens_per_cycle 450)") for n in report.notes), report.notes
    assert "budget spent" in report.markdown() and 0 < report.tokens <= 450
    assert sorted(p.name for p in (store.root / "inbox").glob("t*.md")) == ["t1.md", "t2.md"]
    cycle(store)  # the next cycle has a fresh budget and goes on where this one stopped
    assert len(stub.requests) == 2 and len(list((store.root / "inbox").glob("t*.md"))) == 1


def test_cost_budget_uses_litellm_prices(
    tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a model litellm's local price map knows (served by the stub): cost is counted, and it stops the cycle
    store = make_store(
        tmp_path / "s", stub, monkeypatch, model="openai/gpt-4o-mini", max_cost_per_cycle=0.0003
    )
    for n in range(3):
        (store.root / "inbox" / f"t{n}.md").write_text(
            f"Session {n}: " + "words " * 300 + "\n", encoding="utf-8"
        )
    report = cycle(store)
    assert 1 <= len(stub.requests) < 3 and stub.requests[0]["model"] == "gpt-4o-mini"
    assert 0 < report.cost <= 0.0003 and any(n.startswith("budget spent (max_cost") for n in report.notes)


# -- judge, merge-writing, compression --------------------------------------------------------------------
def test_judge_decides_an_unsure_contradiction(
    tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch)  # sure = 0.99: the plan is unsure of every pair
    old = store.write("The cache TTL for the catalog service is 300 seconds.", author="agent")
    new = store.write("The cache TTL for the catalog service is 900 seconds.", author="agent", force=True)

    def verdict(body: dict[str, Any]) -> str:
        text = user_text(body)
        a = text.split("\n\nB (written")[0]
        return json.dumps({"holds": "A" if "900" in a else "B", "reason": "900 s is the corrected value"})

    stub.reply = verdict
    report = cycle(store)
    (applied,) = report.applied
    assert applied["kind"] == "supersede" and applied["sure"] and "judge" in applied["evidence"]
    assert store.read(old["id"])["meta"]["superseded_by"] == new["id"]
    assert "300 seconds" in store.read(old["id"])["content"]


def test_the_judge_is_asked_about_a_correction_too_weak_to_queue(
    tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another value for the same attribute, with no correction word ("graphic designer" -> "software
    engineer"), scores under `maybe`: without a model nothing happens to it (a person's queue would drown in
    such pairs); with one, the judge is asked, and a pair it says holds is superseded. One it calls
    compatible stays as it was, and is not queued either."""
    designer = "Jonas Wade works in Lisbon as an accomplished graphic designer."
    engineer = "Jonas Wade works in Lisbon as a software engineer on the payments team."
    hiking = "Jonas Wade works in Lisbon and goes hiking in the mountains at weekends."
    weak = "maybe = 0.99\nask = 0.3\n"  # every pair of these is too weak to queue, and worth a question

    def write_all(store: Store) -> tuple[str, str, str]:
        a = store.write(designer, author="agent")["id"]
        b = store.write(hiking, author="agent", force=True)["id"]
        time.sleep(1.1)  # later: the engineer memory is the newer
        return a, b, store.write(engineer, author="agent", force=True)["id"]

    Store.init(tmp_path / "none").close()
    (tmp_path / "none" / "somna.toml").write_text(THRESHOLDS + weak, encoding="utf-8")
    plain = Store(tmp_path / "none", embedder=HashEmbedder())
    write_all(plain)
    report = cycle(plain)
    assert not [a for a in report.applied + report.queued if a["kind"] == "supersede"]
    plain.close()

    store = make_store(tmp_path / "s", stub, monkeypatch, extra=weak)
    old, other, new = write_all(store)

    def verdict(body: dict[str, Any]) -> str:
        a, _ = user_text(body).split("\n\nB (written")
        return json.dumps({"holds": "A" if "software" in a else "B", "reason": "a new job"})

    stub.reply = verdict
    report = cycle(store)
    supersedes = [a for a in report.applied if a["kind"] == "supersede"]
    assert [(a["data"]["new"], a["data"]["old"]) for a in supersedes] == [(new, old)]
    assert "judge" in supersedes[0]["evidence"] and not [a for a in report.queued if a["kind"] == "supersede"]
    assert store.read(old)["meta"]["superseded_by"] == new and designer in store.read(old)["content"]
    assert store.read(other)["meta"].get("status", "active") == "active"
    assert len(stub.requests) == 1  # one question: the engineer memory's best match only
    store.close()

    store = make_store(tmp_path / "both", stub, monkeypatch, extra=weak)
    old, _, new = write_all(store)
    stub.reply = lambda body: json.dumps({"holds": "both", "reason": "one can do both"})
    report = cycle(store)
    assert not [a for a in report.applied + report.queued if a["kind"] == "supersede"]
    assert store.read(old)["meta"].get("status", "active") == "active" and len(stub.requests) == 2
    store.close()


def test_merge_writing_under_the_detail_guard(
    tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch)
    store.write("The dev database listens on port 5433, not the default port.", author="agent")
    store.write(
        "The dev database listens on port 5433, not the default port; see config/db.toml.",
        author="agent",
        force=True,
    )
    store.write("Build the docs with mkdocs build before publishing the docs site.", author="agent")
    store.write(
        "Build the docs with mkdocs build --strict before publishing the docs site.",
        author="agent",
        force=True,
    )

    def merged(body: dict[str, Any]) -> str:
        if "5433" in user_text(body):
            return json.dumps(
                {"title": "Dev database port", "content": "The dev DB is on port 5433 (config/db.toml)."}
            )
        return json.dumps(
            {"title": "Docs", "content": "Build the docs with mkdocs before publishing."}
        )  # lost --strict

    stub.reply = merged
    report = cycle(store)
    merges = [a for a in report.applied if a["kind"] == "merge"]
    assert len(merges) == 2 and len(stub.requests) == 2
    texts = {a["data"]["text"] for a in merges}
    assert "The dev DB is on port 5433 (config/db.toml).\n" in texts  # the model's text, every detail kept
    assert any("--strict" in t and "mkdocs build" in t for t in texts)  # the plan's own text: nothing lost
    assert any("detail guard rejected the model's merge" in n and "--strict" in n for n in report.notes)


BLOCK = (
    "Conventions for this repo, agreed with the team over many sessions and repeated here at length. "
    * 16
    + "\nRun `make check` before pushing; it runs ruff and pytest -x. The API listens on port 8443. "
    "Config lives in config/app.toml. Use --no-cache for docker builds.\n"
)


def test_block_compression_is_guarded_and_reviewed(
    tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s", stub, monkeypatch)
    block = store.read("block:project")
    store.edit("block:project", "replace", block["version"], text=BLOCK, author="human")
    short = (
        "Team conventions. Run `make check` before pushing (ruff, pytest -x). API on port 8443; "
        "config in config/app.toml; docker builds with --no-cache."
    )
    stub.reply = lambda body: json.dumps({"text": short.replace(" (ruff, pytest -x)", ""), "moved": []})
    report = cycle(store)
    assert not report.queued and any("would lose ['-x']" in n for n in report.notes), report.notes
    assert store.read("block:project")["content"] == BLOCK

    store.edit(
        "block:project", "append", store.read("block:project")["version"], text="Be brief.", author="human"
    )
    stub.reply = lambda body: json.dumps({"text": short, "moved": []})
    report = cycle(store)
    (queued,) = report.queued
    assert queued["kind"] == "compress" and store.read("block:project")["content"].startswith("Conventions")
    assert len(stub.requests) == 2 and cycle(store).tokens == 0  # a block already offered is not asked again
    (item,) = store.proposals()
    store.accept(item["id"], author="human")
    assert store.read("block:project")["content"].strip() == short


# -- (d) no lost concurrent write --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_no_lost_write_while_a_slow_llm_cycle_runs(
    tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "s"
    make_store(root, stub, monkeypatch).close()
    stub.delay = 2.5
    stub.reply = lambda body: lessons(
        (
            "lesson",
            "Payment tests",
            "Run the payment tests with pytest -x so the run stops at the first failure. "
            "The suite needs PAYMENTS_SANDBOX=1.",
        ),
        ("fact", "Release day", "Releases are cut on Tuesdays from the main branch by the release bot."),
    )
    claude_transcript(root / "inbox" / "session.jsonl")
    async with mcp_client(root, name="agent-a") as s:
        target = await call(
            s, "write", content="Run the payment tests with pytest -x so the run stops at the first failure."
        )
        other = await call(s, "write", content="The staging cluster is called kestrel and runs in eu-west-1.")
        sleeper = subprocess.Popen(
            [sys.executable, "-m", "somna", "--store", str(root), "sleep", "--once"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        try:
            with anyio.fail_after(30):
                while not stub.requests:  # the cycle has its snapshot and waits on the model
                    await anyio.sleep(0.05)
            edit = await call(
                s,
                "propose_edit",
                id=target["id"],
                op="append",
                base_version=target["version"],
                text="Agent: the suite takes 4 minutes.",
            )
            await call(
                s,
                "propose_edit",
                id=other["id"],
                op="append",
                base_version=other["version"],
                text="Agent: its ingress is kestrel-gw.",
            )
            writes = [
                await call(s, "write", content=text)
                for text in (
                    "The billing worker retries webhooks five times with jitter.",
                    "Feature flags live in LaunchDarkly; the SDK key is read from the vault.",
                    "Our Grafana dashboards are provisioned from the ops/dashboards folder.",
                    "Nightly backups of Postgres are kept for 35 days in cold storage.",
                )
            ]
            assert sleeper.poll() is None, "the cycle should still be waiting on the slow model"
            out, err = await anyio.to_thread.run_sync(sleeper.communicate)
        finally:
            if sleeper.poll() is None:
                sleeper.kill()
                sleeper.wait()
        assert sleeper.returncode == 0, err
        assert edit["status"] == "applied"
        last = await call(s, "write", content="Written after the cycle: the cache warms up in 90 s.")
    assert "LLM tokens" in out and "LLM tokens 0," not in out, out
    # the cycle's addition to the memory the agent edited meanwhile builds on the agent's edit, or is dropped
    target_text = (root / "memory" / f"{target['id']}.md").read_text(encoding="utf-8")
    assert "Agent: the suite takes 4 minutes." in target_text
    if "PAYMENTS_SANDBOX" in target_text:
        assert target_text.index("Agent: the suite") < target_text.index("PAYMENTS_SANDBOX")
    else:
        assert "changed since the snapshot" in out
    assert "Agent: its ingress is kestrel-gw." in (root / "memory" / f"{other['id']}.md").read_text(
        encoding="utf-8"
    )
    log = git_changes(root)
    index = Index(root / ".somna")
    try:
        for w in [*writes, last]:
            assert (root / "memory" / f"{w['id']}.md").is_file() and f"agent-a|write {w['id']}:" in log
            assert index.get(w["id"]) is not None
        row = index.get(target["id"])
        assert row is not None and "Agent: the suite takes 4 minutes." in row.body
    finally:
        index.close()
    assert log.count("agent-a|append ") == 2 and "somna-sleep|sleep cycle" in log
    assert (root / "inbox" / "processed" / "session.jsonl").is_file()
    doctor = somna("--store", str(root), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


@pytest.mark.slow  # ten gated cycles: about a minute
def test_ten_cycles_with_a_model_that_answers_badly_lose_no_probe(
    tmp_path: Path, stub: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that is wrong every time it is asked (the judge sides with the outdated value, a merge it
    writes drops the details) and a new look-alike written before each cycle: after each of 10 cycles, every
    probe that passed at the start still passes, a person's as written, a derived one by the memory or by
    what took its place."""
    from somna.sleep import exam

    store = make_store(tmp_path / "s", stub, monkeypatch)
    store.write("The catalog service cache TTL is 300 seconds.", author="agent")
    time.sleep(1.1)
    # no cue word ("now"): the deterministic passes cannot tell which holds, so the model is asked
    store.write("The catalog service cache TTL is 900 seconds.", author="agent", force=True)
    store.write("The dev database listens on port 5433; see config/db.toml.", author="agent")
    store.write(
        "The dev database listens on port 5433, not 5432; see config/db.toml.", author="agent", force=True
    )
    store.write("Run `make lint` before pushing; it runs ruff with --fix.", author="agent")
    store.write("Integration tests time out after 45 minutes in CI.", author="agent")
    exam.add_probe(store, "which port does the dev database listen on", "5433", author="human")
    exam.add_probe(store, "what is the catalog cache TTL", "900", author="human")

    def wrong(body: dict[str, Any]) -> str:
        text = user_text(body)
        if "B (written" in text:  # the judge: the outdated value holds
            a = text.split("\n\nB (written")[0]
            return json.dumps(
                {"holds": "A" if ("300" in a or "5432" in a) else "B", "reason": "older is right"}
            )
        if '"title"' in str(body["messages"][0]["content"]) or "merge" in text.lower():
            return json.dumps({"title": "Notes", "content": "Some settings of the services."})  # drops it all
        return json.dumps({"memories": []})

    stub.reply = wrong
    probes = exam.probes_of(store)
    start = exam.run(store, probes)
    assert {o.probe.expect for o in start if o.probe.source == "person" and o.passed} == {("5433",), ("900",)}
    by_exam = []
    for round_ in range(10):
        store.write(f"The staging database listens on port {5500 + round_}.", author="agent", force=True)
        report = cycle(store)
        by_exam += [d for d in report.dropped if "the exam" in d.get("why", "")]
        successors = {r.id: r.successor for r in store.index.all_rows("memory") if r.successor}
        after = exam.run(store, probes)
        lost = exam.regressions(start, after, store, successors)
        assert not lost, f"cycle {round_ + 1} lost {[r.why() for r in lost]}"
    assert len(stub.requests) >= 5  # the model was asked, and answered wrongly, cycle after cycle
    assert any(
        "what is the catalog cache TTL" in d["why"] for d in by_exam
    )  # the judge's wrong call, stopped
    current = [r for r in store.index.all_rows("memory") if "900 seconds" in r.body]
    assert current and all(r.status == "active" for r in current)  # the bad verdicts retired nothing true
    store.close()
