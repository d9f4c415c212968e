"""The MCP Skills extension (SEP-2640) over a raw JSON-RPC session: the real `somna serve`, no SDK on the
client side (issue 18, point 1), and the manifests in process for what a session cannot reach cheaply."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import somna
from test_skills import GOOD, make_skill

from somna import skill_store
from somna.app import open_store
from somna.embeddings import HashEmbedder
from somna.errors import InvalidInput, NotFound
from somna.skill_extension import lean_instructions
from somna.skill_manifest import MAX_RESOURCES, Manifests
from somna.skills import Catalog, Root

EXT = "io.modelcontextprotocol/skills"
INVALID_PARAMS, METHOD_NOT_FOUND = -32602, -32601
SECRET = "the-secret-outside-every-skill"


class Raw:
    """A JSON-RPC peer on the server's stdin/stdout: requests by id, notifications kept in order."""

    def __init__(
        self, store: Path | None, env: dict[str, str] | None = None, errlog: Path | None = None
    ) -> None:
        where = ["--store", str(store)] if store is not None else []  # none: the user store or shared server
        self.err = open(errlog, "wb") if errlog else None  # noqa: SIM115 (closed by close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "somna", *where, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err if self.err else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self.answers: dict[int, dict[str, Any]] = {}
        self.notes: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ready = threading.Condition()
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)  # stdout is the wire: every line must be one JSON-RPC message
            assert message["jsonrpc"] == "2.0"
            if "id" in message and "method" not in message:
                with self.ready:
                    self.answers[message["id"]] = message
                    self.ready.notify_all()
            elif "id" not in message:
                self.notes.put(message)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20) -> dict[str, Any]:
        """The whole answer: `result` or `error`."""
        self.next_id += 1
        rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        with self.ready:
            assert self.ready.wait_for(lambda: rid in self.answers, timeout), f"no answer to {method}"
            return self.answers.pop(rid)

    def result(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.ask(method, params)
        assert "result" in answer, answer
        return dict(answer["result"])

    def error(self, method: str, params: dict[str, Any], code: int = INVALID_PARAMS) -> str:
        answer = self.ask(method, params)
        assert "error" in answer and answer["error"]["code"] == code, answer
        assert SECRET not in json.dumps(answer)
        return str(answer["error"]["message"])

    def initialize(self, extension: bool = True) -> dict[str, Any]:
        caps: dict[str, Any] = {"extensions": {EXT: {}}} if extension else {}
        info = {"name": "raw-host", "version": "1"}
        out = self.result(
            "initialize", {"protocolVersion": "2025-11-25", "capabilities": caps, "clientInfo": info}
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return out

    def wait_note(self, method: str, timeout: float = 3) -> float:
        """Seconds until a notification of `method` arrived (others are dropped on the way)."""
        start = time.monotonic()
        while True:
            left = start + timeout - time.monotonic()
            assert left > 0, f"no {method} within {timeout} s"
            try:
                if self.notes.get(timeout=left)["method"] == method:
                    return time.monotonic() - start
            except queue.Empty:
                continue

    def drain(self) -> None:
        while not self.notes.empty():
            self.notes.get_nowait()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.err:
            self.err.close()
        self.reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def front_matter(md: Path) -> dict[str, Any]:
    text = md.read_text(encoding="utf-8")
    return dict(yaml.safe_load(text.split("---\n")[1]))


def expected_entry(folder: Path, files: list[str]) -> dict[str, Any]:
    """The entry the extension must give, recomputed here from the bytes on disk."""
    name = folder.name
    return {
        "uri": f"skill://{name}/SKILL.md",
        "frontmatter": front_matter(folder / "SKILL.md"),
        "resources": [
            {
                "uri": f"skill://{name}/{rel}",
                "digest": digest((folder / rel).read_bytes()),
                "size": (folder / rel).stat().st_size,
            }
            for rel in sorted(files)
        ],
    }


def content_bytes(item: dict[str, Any]) -> bytes:
    return base64.b64decode(item["blob"]) if "blob" in item else item["text"].encode("utf-8")


def all_skills(raw: Raw) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page = raw.result("skills/list", {"cursor": cursor} if cursor else {})
        out += page["skills"]
        cursor = page.get("nextCursor")
        if not cursor:
            return out


def load_skill_names(raw: Raw) -> list[str] | None:
    (tool,) = [t for t in raw.result("tools/list")["tools"] if t["name"] == "load_skill"]
    return tool["inputSchema"]["properties"]["name"].get("enum")


@pytest.fixture
def dropped(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A store with one rich skill, and a mounted folder of 60 more: (store, the skill, the mount)."""
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    (tmp_path / "secret.md").write_text(SECRET, encoding="utf-8")
    skill = make_skill(store / "skills", "git-flow", "Branch, commit and merge the team's way.")
    (skill / "scripts").mkdir()
    (skill / "scripts" / "check.py").write_text("print('ok')\r\n", encoding="utf-8")
    (skill / "assets").mkdir()
    (skill / "assets" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (skill / "references" / "leak.md").symlink_to(tmp_path / "secret.md")  # a link out: never served
    (skill / ".env").write_text(SECRET, encoding="utf-8")  # hidden: never served
    mount = tmp_path / "mounted"
    for i in range(60):
        make_skill(
            mount,
            f"mounted-{i:02d}",
            f"Mounted skill number {i}.",
            guide=None,
            text=(
                GOOD.format(name=f"mounted-{i:02d}", desc=f"Mounted skill number {i}.").replace(
                    " Details in [the guide](references/guide.md).", ""
                )
            ),
        )
    return store, skill, mount


def test_raw_session_lists_gets_reads_and_refuses(dropped: tuple[Path, Path, Path]) -> None:
    store, skill, mount = dropped
    raw = Raw(store, {"SOMNA_SKILL_DIRS": str(mount)})
    try:
        init = raw.initialize()
        assert init["capabilities"]["extensions"][EXT] == {"directoryRead": True}
        assert "## Skills" not in init["instructions"] and "git-flow" not in init["instructions"]

        skills = all_skills(raw)  # every skill of the store and of the mounted folder, page by page
        assert [s["uri"] for s in skills] == ["skill://git-flow/SKILL.md"] + [
            f"skill://mounted-{i:02d}/SKILL.md" for i in range(60)
        ]
        files = ["SKILL.md", "references/guide.md", "scripts/check.py", "assets/logo.png"]
        expected = expected_entry(skill, files)
        assert skills[0] == expected
        assert skills[0]["frontmatter"] == {
            "name": "git-flow",
            "description": "Branch, commit and merge the team's way.",
            "license": "MIT",
            "metadata": {"author": "tests"},
        }
        assert raw.result("skills/get", {"uri": "skill://git-flow/SKILL.md"}) == {"skill": expected}

        for resource in expected["resources"]:  # every file reads back to the digest the listing promised
            contents = raw.result("resources/read", {"uri": resource["uri"]})["contents"]
            assert len(contents) == 1 and contents[0]["uri"] == resource["uri"]
            assert digest(content_bytes(contents[0])) == resource["digest"]
        read = raw.result("resources/read", {"uri": "skill://git-flow/SKILL.md"})["contents"][0]
        assert read["mimeType"] == "text/markdown" and "blob" not in read
        logo = raw.result("resources/read", {"uri": "skill://git-flow/assets/logo.png"})["contents"][0]
        assert logo["mimeType"] == "image/png" and "blob" in logo

        root = raw.result("resources/directory/read", {"uri": "skill://git-flow"})["resources"]
        assert [(r["name"], r["mimeType"]) for r in root] == [
            ("git-flow", "text/markdown"),  # SKILL.md, named from its front matter
            ("assets", "inode/directory"),
            ("references", "inode/directory"),
            ("scripts", "inode/directory"),
        ]
        assert root[0]["uri"] == "skill://git-flow/SKILL.md"
        assert root[0]["description"] == "Branch, commit and merge the team's way."
        refs = raw.result("resources/directory/read", {"uri": "skill://git-flow/references"})["resources"]
        assert [r["uri"] for r in refs] == ["skill://git-flow/references/guide.md"]  # the link is not there

        for escape in (
            "skill://git-flow/../../secret.md",
            "skill://git-flow/%2e%2e/%2E%2E/secret.md",
            "skill://git-flow/references%2f..%2f..%2f..%2fsecret.md",
            "skill://git-flow/references/..%5c..%5csecret.md",
            "skill://git-flow//etc/passwd",
            "skill://git-flow/references/leak.md",
            "skill://git-flow/.env",
            "skill://git-flow/references/guide.md%00.png",
            "skill://..%2f..%2fsecret.md",
        ):
            message = raw.error("resources/read", {"uri": escape})
            assert "refused" in message or "no file" in message, (escape, message)
        assert "leaves the skill" in raw.error("resources/read", {"uri": "skill://git-flow/../../secret.md"})

        assert "no skill 'nope'" in raw.error("skills/get", {"uri": "skill://nope/SKILL.md"})
        assert "no skill 'nope'" in raw.error("resources/read", {"uri": "skill://nope/SKILL.md"})
        assert "no file" in raw.error("resources/read", {"uri": "skill://git-flow/references/missing.md"})
        assert "not a skill" in raw.error("skills/get", {"uri": "skill://git-flow/references/guide.md"})
        assert "not a skill URI" in raw.error("skills/get", {"uri": "file:///etc/passwd"})
        assert "directory" in raw.error("resources/read", {"uri": "skill://git-flow/references"})
        assert "is a file" in raw.error("resources/directory/read", {"uri": "skill://git-flow/SKILL.md"})
        assert "cursor" in raw.error("skills/list", {"cursor": "garbage"})
        raw.error("skills/get", {}, INVALID_PARAMS)  # no uri at all
        raw.error("skills/nope", {}, METHOD_NOT_FOUND)

        # the tools stay for hosts that do not speak the extension
        tools = {t["name"] for t in raw.result("tools/list")["tools"]}
        assert {"load_skill", "search_skills", "propose_skill"} <= tools
    finally:
        raw.close()


def test_catalog_in_instructions_only_for_hosts_without_the_extension(tmp_path: Path) -> None:
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    make_skill(store / "skills", "rotate-keys", "Rotate the signing keys. Use before a release.")
    plain = Raw(store)
    try:
        instructions = plain.initialize(extension=False)["instructions"]
        assert "rotate-keys: Rotate the signing keys" in instructions
        assert load_skill_names(plain) == ["rotate-keys"]
    finally:
        plain.close()
    host = Raw(store)
    try:
        lean = host.initialize()["instructions"]
        assert "rotate-keys" not in lean and "Skills extension" in lean
        assert len(lean) < len(instructions)
        assert lean.split("\nSkills:")[0] == instructions.split("\nSkills:")[0]  # the rest is the same
        assert load_skill_names(host) is None  # nor are the names repeated in load_skill's schema
    finally:
        host.close()
    modern = Raw(store)  # a 2026-era host: no handshake, the extension declared in each request's envelope
    try:
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {EXT: {}}},
        }
        found = modern.result("server/discover", {"_meta": meta})
        assert found["capabilities"]["extensions"][EXT] == {"directoryRead": True}
        assert "rotate-keys" not in found["instructions"]
        listed = modern.result("skills/list", {"_meta": meta})
        assert [s["uri"] for s in listed["skills"]] == ["skill://rotate-keys/SKILL.md"]
        assert listed["resultType"] == "complete" and listed["ttlMs"] == 0
    finally:
        modern.close()


def test_dropped_edited_removed_and_accepted_skills_are_heard(tmp_path: Path) -> None:
    """A new folder, an edit of a reference file, a removal: each sends resources/list_changed (the
    extension defines no notification of its own); a skill sleep-time learned and a person accepted is
    listed at once."""
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    raw = Raw(store)
    try:
        raw.initialize()
        assert raw.result("skills/list")["skills"] == []
        staged = make_skill(tmp_path / "staging", "squash-migrations", "Squash Django migrations into one.")
        raw.drain()
        staged.rename(store / "skills" / "squash-migrations")  # dropped in, as a whole folder
        assert raw.wait_note("notifications/resources/list_changed") < 2
        (entry,) = raw.result("skills/list")["skills"]
        assert entry == expected_entry(
            store / "skills" / "squash-migrations", ["SKILL.md", "references/guide.md"]
        )

        raw.drain()  # an edit of a supporting file: the catalog's scan does not see it, the digests do
        guide = store / "skills" / "squash-migrations" / "references" / "guide.md"
        guide.write_text("the guide, now with the squash command\n", encoding="utf-8")
        assert raw.wait_note("notifications/resources/list_changed", timeout=5) < 3
        got = raw.result("skills/get", {"uri": entry["uri"]})["skill"]
        assert got["resources"][1]["digest"] == digest(guide.read_bytes()) != entry["resources"][1]["digest"]

        raw.drain()
        shutil.rmtree(store / "skills" / "squash-migrations")
        assert raw.wait_note("notifications/resources/list_changed") < 2
        assert "no skill" in raw.error("skills/get", {"uri": entry["uri"]})

        # learned by sleep-time, queued as a `skill` proposal, accepted by a person from another process
        opened = open_store(store, embedder=HashEmbedder())
        text = GOOD.format(name="learned-skill", desc="Learned from three tasks.").replace(
            " Details in [the guide](references/guide.md).", ""
        )
        proposed = skill_store.propose(opened, "learned-skill", text, author="somna-sleep", reason="recurred")
        opened.close()
        assert proposed["status"] == "proposed"
        assert raw.result("skills/list")["skills"] == []
        accepted = somna("--store", str(store), "proposals", "accept", proposed["proposal"])
        assert accepted.returncode == 0, accepted.stderr
        (learned,) = raw.result("skills/list")["skills"]  # at once: the answer catches up first
        assert learned["uri"] == "skill://learned-skill/SKILL.md"
        assert learned["frontmatter"]["description"] == "Learned from three tasks."
    finally:
        raw.close()


def test_a_host_attached_to_the_shared_server_gets_the_extension_through_the_relay(somna_env: Path) -> None:
    """`somna serve` attached to the shared HTTP server (the relay, no SDK): the same extension, and the
    list-changed notification comes back through the relay's GET stream."""
    from test_http import http_server

    with http_server(somna_env) as server:
        log = somna_env.parent / "attached.log"
        raw = Raw(None, {"SOMNA_LOG_LEVEL": "INFO"}, errlog=log)
        try:
            assert raw.initialize()["capabilities"]["extensions"][EXT] == {"directoryRead": True}
            assert "attached to the shared somna server" in log.read_text(encoding="utf-8")
            raw.result("tools/list")
            time.sleep(0.5)  # the relay opens the GET stream after `initialized`
            raw.drain()
            skill = make_skill(
                somna_env / "skills", "rotate-keys", "Rotate the API keys. Use when one leaked."
            )
            raw.wait_note("notifications/resources/list_changed", timeout=10)
            (entry,) = raw.result("skills/list")["skills"]
            assert entry == expected_entry(skill, ["SKILL.md", "references/guide.md"])
            for resource in entry["resources"]:
                (item,) = raw.result("resources/read", {"uri": resource["uri"]})["contents"]
                assert digest(content_bytes(item)) == resource["digest"]
            assert "refused" in raw.error("resources/read", {"uri": "skill://rotate-keys/%2e%2e/%2e%2e/x"})
        finally:
            raw.close()
        assert server.proc.poll() is None


# -- in process: what a session cannot reach cheaply ------------------------------------------------
def catalog(root: Path) -> Catalog:
    return Catalog([Root(root, "store", True)])


def test_front_matter_is_json_and_nameless_or_oversized_skills_are_left_out(tmp_path: Path) -> None:
    root = tmp_path / "skills"
    dated = GOOD.format(name="dated", desc="Has a date.").replace("license: MIT", "created: 2026-01-02")
    make_skill(root, "dated", text=dated)
    nameless = GOOD.format(name="x", desc="No name line.").replace("name: x\n", "")
    make_skill(root, "nameless", text=nameless)
    big = make_skill(root, "big", "Too many files.")
    for i in range(MAX_RESOURCES):
        (big / "references" / f"f{i}.md").write_text("x", encoding="utf-8")
    manifests = Manifests(catalog(root))
    entry = manifests.entry("skill://dated/SKILL.md")
    assert entry["frontmatter"]["created"] == "2026-01-02"
    json.dumps(entry)  # JSON all the way down
    with pytest.raises(InvalidInput, match="name: nameless"):
        manifests.entry("skill://nameless/SKILL.md")
    with pytest.raises(InvalidInput, match="limits"):
        manifests.entry("skill://big/SKILL.md")
    with pytest.raises(NotFound):
        manifests.entry("skill://gone/SKILL.md")
    entries, last = manifests.entries()
    assert [e["uri"] for e in entries] == ["skill://dated/SKILL.md"] and last is None


def test_lean_instructions_drop_the_catalog_and_nothing_else() -> None:
    line, listing = "\nSkills: 2 available. …\n", "\n## Skills (name: when to use it)\n- a: x\n- b: y\n"
    full = "guide\n" + line + "\n## block\ntext\n" + listing
    lean = lean_instructions(full, (line, listing))
    assert lean.startswith("guide\n\nSkills: your host lists") and lean.endswith("\n## block\ntext\n")
    assert lean_instructions("guide\n", ("", "")) == "guide\n"
