"""somna install/uninstall on real files, in a throwaway HOME and project that already hold other servers."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from somna.install import (
    HARNESSES,
    SCOPES,
    InstallError,
    apply,
    config_path,
    default_command,
    plan,
    run_install,
    uninstall,
)

COMMAND = ["/opt/somna/bin/somna"]
CONTAINER = {"claude-code": "mcpServers", "cursor": "mcpServers", "codex": "mcp_servers", "vscode": "servers"}
CASES = [(h, s) for h in HARNESSES for s in SCOPES]

CLAUDE_USER = """{
  "numStartups": 42,
  "theme": "dark",
  "projects": {
    "/home/u/work": {
      "allowedTools": [],
      "mcpServers": {}
    }
  },
  "mcpServers": {
    "context7": {
      "type": "stdio",
      "command": "npx",
      "args": [
        "-y",
        "@upstash/context7-mcp"
      ],
      "env": {}
    }
  },
  "userID": "0123abcd"
}
"""
CLAUDE_PROJECT = """{
  "mcpServers": {
    "sentry": {
      "command": "npx",
      "args": ["@sentry/mcp-server@latest"]
    }
  }
}
"""
CURSOR = """{
  "mcpServers": {
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": { "GITHUB_TOKEN": "${env:GITHUB_TOKEN}" }
    },
    "remote": { "url": "https://mcp.example.com/mcp" }
  }
}
"""
CODEX = """# Codex settings
model = "gpt-5-codex"
approval_policy = "on-request"

[mcp_servers.context7]
command = "npx"
args = ["-y", "@upstash/context7-mcp"]

[mcp_servers.context7.env]
API_KEY = "k"

# fast profile
[profiles.fast]
model = "o4-mini"
"""
VSCODE = """{
  // Servers for this workspace; see https://code.visualstudio.com/docs
  "inputs": [
    { "type": "promptString", "id": "token", "description": "API token", "password": true }
  ],
  "servers": {
    // a remote one
    "github": {
      "type": "http",
      "url": "https://api.githubcopilot.com/mcp/"
    },
    "memory": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-memory"]
    }
  }
}
"""
SEEDS = {
    "claude-code": {"user": CLAUDE_USER, "project": CLAUDE_PROJECT},
    "cursor": CURSOR,
    "codex": CODEX,
    "vscode": VSCODE,
}


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A HOME and a project folder side by side in a folder of their own (tree() snapshots that folder)."""
    home, project = tmp_path / "machine" / "home", tmp_path / "machine" / "project"
    home.mkdir(parents=True)
    project.mkdir()
    return home, project


def seed_text(harness: str, scope: str) -> str:
    seed = SEEDS[harness]
    return seed[scope] if isinstance(seed, dict) else seed


def seed(dirs: tuple[Path, Path], harness: str, scope: str, text: str | None = None) -> tuple[Path, bytes]:
    path = where(dirs, harness, scope)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((seed_text(harness, scope) if text is None else text).encode("utf-8"))
    return path, path.read_bytes()


def where(dirs: tuple[Path, Path], harness: str, scope: str) -> Path:
    return config_path(harness, scope, home=dirs[0], project=dirs[1], platform="linux")


def install(
    dirs: tuple[Path, Path], harness: str, scope: str, *, command: list[str] = COMMAND, dry_run: bool = False
) -> list[str]:
    changes = plan(
        harness, scope, home=dirs[0], project=dirs[1], command=command, use_cli=False, platform="linux"
    )
    return apply(changes, dry_run=dry_run)


def remove(dirs: tuple[Path, Path], harness: str, scope: str, *, dry_run: bool = False) -> list[str]:
    changes = uninstall(harness, scope, home=dirs[0], project=dirs[1], use_cli=False, platform="linux")
    return apply(changes, dry_run=dry_run)


def load(harness: str, text: str) -> dict[str, Any]:
    """The file as the harness reads it (VS Code: JSON with comments; the seeds have only line comments)."""
    if harness == "codex":
        return tomllib.loads(text)
    if harness == "vscode":
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    result: dict[str, Any] = json.loads(text)
    return result


def somna_entry(harness: str, command: list[str] = COMMAND) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "stdio"} if harness in ("claude-code", "vscode") else {}
    return {**entry, "command": command[0], "args": [*command[1:], "serve"]}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def kept_in_order(original: str, new: str) -> bool:
    """Every line of the original is still there, in order (the value that was last may gain a comma)."""
    lines = iter(line.rstrip().rstrip(",") for line in new.splitlines())
    return all(line.rstrip().rstrip(",") in lines for line in original.splitlines())


@pytest.mark.parametrize(("harness", "scope"), CASES)
def test_install_adds_somna_and_keeps_everything_else(
    dirs: tuple[Path, Path], harness: str, scope: str
) -> None:
    path, original = seed(dirs, harness, scope)

    lines = install(dirs, harness, scope)

    text = path.read_text(encoding="utf-8")
    after, before = load(harness, text), load(harness, original.decode("utf-8"))
    assert after[CONTAINER[harness]].pop("somna") == somna_entry(harness)
    assert after == before
    assert kept_in_order(original.decode("utf-8"), text)
    backup = path.with_name(path.name + ".somna-backup")
    assert backup.read_bytes() == original
    assert lines == [f"added somna to {path} (backup: {backup})"]


@pytest.mark.parametrize(("harness", "scope"), CASES)
def test_second_install_changes_nothing(dirs: tuple[Path, Path], harness: str, scope: str) -> None:
    path, _ = seed(dirs, harness, scope)
    install(dirs, harness, scope)
    snapshot = tree(dirs[0].parent)

    changes = plan(
        harness, scope, home=dirs[0], project=dirs[1], command=COMMAND, use_cli=False, platform="linux"
    )
    lines = apply(changes, dry_run=False)

    assert not any(c.changed for c in changes)
    assert lines == [f"{path}: somna is already installed"]
    assert tree(dirs[0].parent) == snapshot


@pytest.mark.parametrize(("harness", "scope"), CASES)
def test_dry_run_writes_nothing(dirs: tuple[Path, Path], harness: str, scope: str) -> None:
    path, _ = seed(dirs, harness, scope)
    snapshot = tree(dirs[0].parent)

    lines = install(dirs, harness, scope, dry_run=True)

    assert lines[0] == f"would add somna to {path}"
    assert any(line.startswith("  +") and "serve" in line for line in lines)
    assert tree(dirs[0].parent) == snapshot
    install(dirs, harness, scope)
    snapshot = tree(dirs[0].parent)
    assert remove(dirs, harness, scope, dry_run=True)[0].startswith("would restore")
    assert tree(dirs[0].parent) == snapshot


@pytest.mark.parametrize(("harness", "scope"), CASES)
def test_uninstall_restores_the_original_bytes(dirs: tuple[Path, Path], harness: str, scope: str) -> None:
    path, original = seed(dirs, harness, scope)
    before = tree(dirs[0].parent)
    install(dirs, harness, scope)

    lines = remove(dirs, harness, scope)

    assert path.read_bytes() == original
    assert tree(dirs[0].parent) == before  # the backup is gone too
    assert lines == [f"restored {path} from {path}.somna-backup"]
    assert remove(dirs, harness, scope) == [f"{path}: somna is not installed"]


@pytest.mark.parametrize(("harness", "scope"), CASES)
def test_uninstall_cuts_only_somna_when_the_file_changed_since(
    dirs: tuple[Path, Path], harness: str, scope: str
) -> None:
    path, original = seed(dirs, harness, scope)
    install(dirs, harness, scope)
    path.write_text(path.read_text(encoding="utf-8").replace('"npx"', '"bunx"'), encoding="utf-8")

    lines = remove(dirs, harness, scope)

    assert path.read_text(encoding="utf-8") == original.decode("utf-8").replace('"npx"', '"bunx"')
    assert lines[0].startswith(f"removed somna from {path} (backup: ")


@pytest.mark.parametrize(("harness", "scope"), CASES)
def test_install_creates_a_missing_file_and_uninstall_deletes_it(
    dirs: tuple[Path, Path], harness: str, scope: str
) -> None:
    path = where(dirs, harness, scope)

    assert install(dirs, harness, scope) == [f"added somna to {path}"]
    assert load(harness, path.read_text(encoding="utf-8")) == {
        CONTAINER[harness]: {"somna": somna_entry(harness)}
    }

    assert remove(dirs, harness, scope) == [f"deleted {path} (somna created it)"]
    assert tree(dirs[0].parent) == {}
    if scope == "project" and harness != "claude-code":
        assert list(dirs[1].iterdir()) == []  # the .cursor/.vscode/.codex folder it made is gone


@pytest.mark.parametrize(("harness", "scope"), CASES)
def test_a_corrupt_config_is_refused_and_left_alone(
    dirs: tuple[Path, Path], harness: str, scope: str
) -> None:
    corrupt = '[mcp_servers.other\ncommand = "npx"\n' if harness == "codex" else '{"mcpServers": {"x": },}\n'
    path, original = seed(dirs, harness, scope, corrupt)

    with pytest.raises(InstallError, match=re.escape(str(path))) as refused:
        plan(harness, scope, home=dirs[0], project=dirs[1], command=COMMAND, use_cli=False, platform="linux")
    with pytest.raises(ValueError, match="changed nothing"):
        uninstall(harness, scope, home=dirs[0], project=dirs[1], use_cli=False, platform="linux")

    assert "not valid" in str(refused.value)
    assert tree(dirs[0].parent) == {str(path.relative_to(dirs[0].parent)): original}


@pytest.mark.parametrize("harness", ["cursor", "codex", "vscode", "claude-code"])
def test_a_new_command_updates_the_entry_and_keeps_keys_the_user_added(
    dirs: tuple[Path, Path], harness: str
) -> None:
    path, original = seed(dirs, harness, "project")
    install(dirs, harness, "project")
    text = path.read_text(encoding="utf-8")
    if harness == "codex":
        text = text.replace('args = ["serve"]\n', 'args = ["serve"]\nenv = { SOMNA_HOME = "/data/somna" }\n')
    else:
        text = re.sub(r'("somna": \{)', r'\1 "env": {"SOMNA_HOME": "/data/somna"},', text)
    path.write_text(text, encoding="utf-8")

    lines = install(dirs, harness, "project", command=["/new/python", "-m", "somna"])

    after = load(harness, path.read_text(encoding="utf-8"))
    entry = after[CONTAINER[harness]].pop("somna")
    assert entry == {
        **somna_entry(harness, ["/new/python", "-m", "somna"]),
        "env": {"SOMNA_HOME": "/data/somna"},
    }
    assert after == load(harness, original.decode("utf-8"))
    assert lines[0].startswith(f"updated somna in {path}")


def test_vscode_comments_and_trailing_commas_survive(dirs: tuple[Path, Path]) -> None:
    original = (
        '{\n\t/* user servers */\n\t"servers": {\n'
        '\t\t"a": {"type": "stdio", "command": "a"}, // mine\n\t},\n}\n'
    )
    path, raw = seed(dirs, "vscode", "user", original)

    install(dirs, "vscode", "user")

    text = path.read_text(encoding="utf-8")
    assert "/* user servers */" in text and "// mine" in text
    assert '\t\t"somna": {\n\t\t\t"type": "stdio",' in text  # indented like the file (tabs)
    plain = re.sub(r",(\s*[}\]])", r"\1", re.sub(r"/\*.*?\*/|//[^\n]*", "", text))
    assert json.loads(plain)["servers"] == {
        "a": {"type": "stdio", "command": "a"},
        "somna": somna_entry("vscode"),
    }
    remove(dirs, "vscode", "user")
    assert path.read_bytes() == raw


@pytest.mark.parametrize(
    "text",
    [
        'mcp_servers = { somna = { command = "x" } }\n',
        '[mcp_servers]\nsomna = { command = "x" }\n',
        'mcp_servers = { other = { command = "x" } }\n',
    ],
)
def test_codex_entries_somna_cannot_edit_as_text_are_refused(dirs: tuple[Path, Path], text: str) -> None:
    path, raw = seed(dirs, "codex", "user", text)

    with pytest.raises(InstallError, match="by hand"):
        plan("codex", "user", home=dirs[0], project=dirs[1], command=COMMAND, use_cli=False)

    assert path.read_bytes() == raw


def test_line_endings_and_file_mode_are_kept(dirs: tuple[Path, Path]) -> None:
    path, raw = seed(dirs, "cursor", "user", CURSOR.replace("\n", "\r\n"))
    path.chmod(0o600)

    install(dirs, "cursor", "user")

    data = path.read_bytes()
    assert b"somna" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    remove(dirs, "cursor", "user")
    assert path.read_bytes() == raw


def test_a_readable_config_stays_readable_and_a_new_one_takes_the_umask(dirs: tuple[Path, Path]) -> None:
    """The edit and its backup keep the file's own mode; a file somna creates gets what any new file would."""
    path, _ = seed(dirs, "cursor", "user")
    path.chmod(0o644)
    install(dirs, "cursor", "user")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.with_name(path.name + ".somna-backup").stat().st_mode) == 0o644

    umask = os.umask(0o022)
    os.umask(umask)
    created = where(dirs, "vscode", "project")
    install(dirs, "vscode", "project")
    assert stat.S_IMODE(created.stat().st_mode) == 0o666 & ~umask
    assert not [p.name for p in created.parent.iterdir() if p.name != created.name]  # no temp file left


def test_a_symlinked_config_is_edited_where_it_points(dirs: tuple[Path, Path]) -> None:
    real = dirs[0] / "dotfiles" / "mcp.json"
    real.parent.mkdir()
    real.write_text(CURSOR, encoding="utf-8")
    link = where(dirs, "cursor", "user")
    link.parent.mkdir()
    link.symlink_to(real)

    install(dirs, "cursor", "user")

    assert link.is_symlink()
    assert "somna" in json.loads(real.read_text(encoding="utf-8"))["mcpServers"]


@pytest.fixture
def claude_stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real `claude` executable on PATH that records how it was called (and fails when asked to)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "claude.log"
    bin_dir.mkdir()
    script = bin_dir / "claude"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"with open({str(log)!r}, 'a', encoding='utf-8') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd()}) + '\\n')\n"
        "if os.environ.get('CLAUDE_STUB_FAIL'):\n    sys.exit('MCP server somna already exists')\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


def test_claude_code_goes_through_its_cli_when_present(
    dirs: tuple[Path, Path], claude_stub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, project = dirs
    changes = plan(
        "claude-code", "project", home=home, project=project, command=["/x/somna"]
    )  # use_cli: auto

    assert (
        apply(changes, dry_run=True)[1]
        == "  would run: claude mcp add --scope project somna -- /x/somna serve"
    )
    assert calls(claude_stub) == []
    apply(changes, dry_run=False)
    assert calls(claude_stub) == [
        {
            "argv": ["mcp", "add", "--scope", "project", "somna", "--", "/x/somna", "serve"],
            "cwd": str(project),
        }
    ]

    seed(
        dirs,
        "claude-code",
        "user",
        '{"mcpServers": {"somna": {"type": "stdio", "command": "/old", "args": []}}}',
    )
    apply(
        plan("claude-code", "user", home=home, project=project, command=["/x/somna"], use_cli=True),
        dry_run=False,
    )
    apply(uninstall("claude-code", "user", home=home, project=project, use_cli=True), dry_run=False)
    assert [c["argv"] for c in calls(claude_stub)[1:]] == [
        ["mcp", "remove", "--scope", "user", "somna"],
        ["mcp", "add", "--scope", "user", "somna", "--", "/x/somna", "serve"],
        ["mcp", "remove", "--scope", "user", "somna"],
    ]

    monkeypatch.setenv("CLAUDE_STUB_FAIL", "1")
    with pytest.raises(InstallError, match="already exists"):
        apply(plan("claude-code", "project", home=home, project=project, command=["/y"]), dry_run=False)


def test_run_install_prints_what_it_did_and_refuses_unknown_names(
    dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    home, project = dirs
    path = where(dirs, "cursor", "project")

    assert run_install("cursor", "project", False, False, home=home, project=project) == 0
    assert capsys.readouterr().out == f"added somna to {path}\n"
    assert (
        json.loads(path.read_text(encoding="utf-8"))["mcpServers"]["somna"]["command"] == default_command()[0]
    )
    assert run_install("cursor", "project", True, True, home=home, project=project) == 0
    assert capsys.readouterr().out.startswith(f"would delete {path}")
    assert path.exists()

    with pytest.raises(ValueError, match="unknown harness 'zed'; choose one of: claude-code, cursor"):
        run_install("zed", "user", False, False, home=home, project=project)
    with pytest.raises(ValueError, match="unknown scope 'global'; choose one of: user, project"):
        run_install("codex", "global", False, False, home=home, project=project)


def test_config_paths(tmp_path: Path) -> None:
    home, project = tmp_path / "h", tmp_path / "p"

    def path(harness: str, scope: str, platform: str = "linux", **environ: str) -> Path:
        return config_path(harness, scope, home=home, project=project, platform=platform, environ=environ)

    assert path("claude-code", "user") == home / ".claude.json"
    assert path("claude-code", "user", CLAUDE_CONFIG_DIR="/c") == Path("/c/.claude.json")
    assert path("claude-code", "project") == project / ".mcp.json"
    assert path("cursor", "user") == home / ".cursor" / "mcp.json"
    assert path("cursor", "project") == project / ".cursor" / "mcp.json"
    assert path("codex", "user") == home / ".codex" / "config.toml"
    assert path("codex", "user", CODEX_HOME="/cx") == Path("/cx/config.toml")
    assert path("codex", "project") == project / ".codex" / "config.toml"
    assert path("vscode", "user") == home / ".config" / "Code" / "User" / "mcp.json"
    assert path("vscode", "user", XDG_CONFIG_HOME="/xdg") == Path("/xdg/Code/User/mcp.json")
    assert (
        path("vscode", "user", "darwin")
        == home / "Library" / "Application Support" / "Code" / "User" / "mcp.json"
    )
    assert path("vscode", "user", "win32", APPDATA="/ad") == Path("/ad/Code/User/mcp.json")
    assert path("vscode", "project") == project / ".vscode" / "mcp.json"


def test_default_command_is_absolute() -> None:
    command = default_command()
    assert Path(command[0]).is_absolute()
    assert command == [command[0]] or command[1:] == ["-m", "somna"]


def test_codex_uninstall_without_a_backup_when_somna_was_the_only_server(dirs: tuple[Path, Path]) -> None:
    path, raw = seed(dirs, "codex", "user", 'model = "o3"\n')
    install(dirs, "codex", "user")
    path.with_name("config.toml.somna-backup").unlink()

    assert remove(dirs, "codex", "user")[0].startswith(f"removed somna from {path}")
    assert path.read_bytes() == raw


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("harness", "name"), [("cursor", "cursor.json"), ("codex", "codex.toml"), ("vscode", "vscode.json")]
)
def test_examples_hold_what_somna_install_writes(harness: str, name: str) -> None:
    text = (EXAMPLES / name).read_text(encoding="utf-8")

    entry = load(harness, text)[CONTAINER[harness]]["somna"]

    assert entry == somna_entry(harness, [entry["command"]])
    assert f"somna install {harness}" in text


def test_the_claude_code_example_holds_what_somna_install_writes() -> None:
    text = (EXAMPLES / "claude-code.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    assert block is not None

    entry = json.loads(block.group(1))["mcpServers"]["somna"]

    assert entry == somna_entry("claude-code", [entry["command"]])
    assert "somna install claude-code" in text
    assert 'claude mcp add --scope user somna -- "$(which somna)" serve' in text
