"""Experience in: `somna capture` as a Claude Code hook, and the hooks `somna install claude-code` adds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import somna

from somna.capture import MAX_STRING, STDIN_WAIT, capture
from somna.install import InstallError, apply, plan_hooks, run_install, settings_path, uninstall_hooks

SECRETS = {  # kind the detector gives -> a planted value
    "aws_access_key": "AKIAZ7Q2LXW4PN3KD8RT",
    "github_token": "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5",
    "openai_key": "sk-proj-Qx7LmN2pR8sT4vW6yZ1aB3cD5eF7gH9j",
    "slack_token": "xoxb-2048-1024-Zr7Yq3WmLp9KxT2v",
    "password": "Xk9#mQ2vL8pz",
    "private_key": "MIIEpAIBAAKCAQEAv3Nq8Zr2LmX0vT4nB7cK1pWqR5sT8uV2wX4yZ6a",
    "secret": "q8Zr2LmX0vT4nB7cK1pW",
    "http_auth": "tok_9f8e7d6c5b4a39281706",
}


def transcript_lines() -> list[str]:
    """A Claude Code session as JSON Lines, with a secret of each kind somewhere a session would have one."""
    s = SECRETS
    records: list[Any] = [
        {
            "type": "user",
            "sessionId": "s-1",
            "message": {
                "role": "user",
                "content": f"Deploy. The AWS key is {s['aws_access_key']} and my token {s['github_token']}",
            },
        },
        {
            "type": "assistant",
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "type": "text",
                        "text": "Running the deploy with the database password from your shell.",
                    },
                    {
                        "type": "tool_use",
                        "name": "Bash",
                        "input": {
                            "command": f"export DB_PASSWORD={s['password']} && ./deploy.sh --env staging"
                        },
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
                        "content": "-----BEGIN RSA PRIVATE KEY-----\n"
                        + s["private_key"]
                        + "\n-----END RSA PRIVATE KEY-----\n",
                    }
                ],
            },
        },
        {
            "type": "assistant",
            "message": {
                "content": [
                    {
                        "type": "tool_use",
                        "name": "Write",
                        "input": {
                            "file_path": ".env",
                            "api_key": s["secret"],
                            "OPENAI_API_KEY": s["openai_key"],
                        },
                    }
                ]
            },
        },
        {
            "type": "assistant",
            "message": {
                "content": [
                    {
                        "type": "tool_use",
                        "name": "Bash",
                        "input": {
                            "command": f"curl -H 'Authorization: Bearer {s['http_auth']}' https://api.internal/v1/ping"
                        },
                    }
                ]
            },
        },
        {"type": "summary", "summary": "Deployed staging; learned that ./deploy.sh needs --env"},
    ]
    lines = [json.dumps(r) for r in records]
    lines.append(f"not JSON: slack says {s['slack_token']} for the bot")  # kept, redacted as text
    return lines


def hook_input(transcript: Path, event: str = "SessionEnd", session: str = "5d1f0c2e-test") -> str:
    payload: dict[str, Any] = {
        "session_id": session,
        "transcript_path": str(transcript),
        "cwd": str(Path.cwd()),
        "hook_event_name": event,
        "permission_mode": "default",
    }
    payload |= (
        {"reason": "prompt_input_exit"}
        if event == "SessionEnd"
        else {"trigger": "auto", "custom_instructions": ""}
    )
    return json.dumps(payload)


def inbox(home: Path) -> list[Path]:
    return sorted((home / "inbox").glob("*.jsonl")) if (home / "inbox").is_dir() else []


def test_a_hooked_transcript_lands_in_the_inbox_with_the_secrets_redacted(
    tmp_path: Path, somna_env: Path
) -> None:
    transcript = tmp_path / "session.jsonl"
    transcript.write_text("\n".join(transcript_lines()) + "\n", encoding="utf-8")

    done = somna("capture", "--harness", "claude-code", input=hook_input(transcript))

    assert done.returncode == 0, done.stderr
    [captured] = inbox(somna_env)
    assert "5d1f0c2e-test" in captured.name and captured.name.startswith("20")
    text = captured.read_text(encoding="utf-8")
    for kind, value in SECRETS.items():
        assert value not in text, kind
    lines = text.splitlines()
    header = json.loads(lines[0])["somna_capture"]
    assert header["session_id"] == "5d1f0c2e-test" and header["event"] == "SessionEnd"
    assert header["lines"] == [1, 7] and header["not_json_lines"] == 1 and header["cut"] is None
    assert set(header["redacted"]) >= {
        "aws_access_key",
        "github_token",
        "openai_key",
        "slack_token",
        "password",
        "private_key",
        "http_auth",
    }
    records = [json.loads(line) for line in lines[1:7]]  # the JSON lines are still JSON, with the rest intact
    assert records[1]["message"]["content"][1]["input"]["command"] == (
        "export DB_PASSWORD=[REDACTED:password] && ./deploy.sh --env staging"
    )
    assert records[3]["message"]["content"][0]["input"]["file_path"] == ".env"
    assert records[5]["summary"].startswith("Deployed staging")
    assert lines[7] == "not JSON: slack says [REDACTED:slack_token] for the bot"
    assert "redacted" in done.stderr and str(captured) in done.stderr
    assert stat_mode(captured) == 0o600


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize(
    "stdin",
    [
        "",
        "garbage",
        "[1, 2]",
        '{"session_id": "x"}',
        '{"transcript_path": 7}',
        '{"transcript_path": "/nonexistent/t.jsonl", "session_id": "x"}',
        '{"transcript_path": "',
        "\x00\xff",
    ],
)
def test_garbage_on_stdin_exits_0_and_writes_nothing(stdin: str, somna_env: Path) -> None:
    done = somna("capture", input=stdin)

    assert done.returncode == 0
    assert done.stdout == ""
    assert done.stderr.startswith("somna capture: nothing captured: ")
    assert inbox(somna_env) == []


def test_the_hook_does_not_wait_for_stdin_to_close(tmp_path: Path, somna_env: Path) -> None:
    """Some harnesses never close a hook's stdin: the input is taken as soon as it is a whole JSON object."""
    transcript = tmp_path / "t.jsonl"
    transcript.write_text('{"type": "user", "message": {"content": "hi"}}\n', encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "somna", "capture"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    assert proc.stdin is not None and proc.stderr is not None
    started = time.monotonic()
    proc.stdin.write(hook_input(transcript).encode())
    proc.stdin.flush()
    try:
        assert proc.wait(timeout=30) == 0
        took = time.monotonic() - started
    finally:
        proc.stdin.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
    assert len(inbox(somna_env)) == 1, err
    assert took < STDIN_WAIT, f"waited {took:.1f} s for stdin to close"


def test_captures_are_incremental_per_session(tmp_path: Path, somna_env: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    first = [json.dumps({"type": "user", "message": {"content": f"turn {i}"}}) for i in range(3)]
    transcript.write_text(
        "\n".join(first) + "\n" + '{"type": "assistant", "mess', encoding="utf-8"
    )  # mid-write

    assert somna("capture", input=hook_input(transcript, "PreCompact")).returncode == 0
    transcript.write_text(
        "\n".join(first)
        + "\n"
        + "\n".join(
            json.dumps({"type": "assistant", "message": {"content": f"answer {i}"}}) for i in range(3)
        )
        + "\n",
        encoding="utf-8",
    )
    assert somna("capture", input=hook_input(transcript, "SessionEnd")).returncode == 0
    again = somna("capture", input=hook_input(transcript, "SessionEnd"))

    one, two = inbox(somna_env)
    assert [json.loads(x) for x in one.read_text(encoding="utf-8").splitlines()[1:]] == [
        json.loads(x) for x in first
    ]
    body = two.read_text(encoding="utf-8").splitlines()
    assert json.loads(body[0])["somna_capture"]["lines"] == [4, 6]
    assert [json.loads(x)["message"]["content"] for x in body[1:]] == ["answer 0", "answer 1", "answer 2"]
    assert "nothing new" in again.stderr and len(inbox(somna_env)) == 2


def test_a_capture_over_the_cap_keeps_head_and_tail_and_says_what_was_cut(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "inbox").mkdir(parents=True)
    transcript = tmp_path / "t.jsonl"
    lines = [json.dumps({"n": i, "text": "x" * 80}) for i in range(100, 200)]  # all the same length
    transcript.write_text("\n".join(lines) + "\n", encoding="utf-8")
    line_bytes = len(lines[0]) + 1

    out = capture(store, transcript, session_id="big", max_bytes=20 * line_bytes)

    assert out.path is not None and out.cut is not None
    body = out.path.read_text(encoding="utf-8").splitlines()
    header = json.loads(body[0])["somna_capture"]
    kept = [json.loads(x) for x in body[1:]]
    assert [k["n"] for k in kept if "n" in k] == [*range(100, 105), *range(185, 200)]
    assert kept[5] == {"somna_cut": {"lines": 80, "bytes": 80 * line_bytes, "why": header["cut"]["why"]}}
    assert header["cut"]["lines"] == 80 and header["cut"]["after_line"] == 5
    assert "left out 80 lines" in out.summary()


def test_a_huge_string_is_clipped_and_still_redacted(tmp_path: Path) -> None:
    store = tmp_path / "store"
    transcript = tmp_path / "t.jsonl"
    secret = SECRETS["github_token"]
    big = secret + " " + "y" * (MAX_STRING * 3)
    transcript.write_text(json.dumps({"type": "user", "message": {"content": big}}) + "\n", encoding="utf-8")

    out = capture(store, transcript, session_id="s")

    assert out.path is not None and out.strings_cut == 1 and out.redacted == Counter({"github_token": 1})
    content = json.loads(out.path.read_text(encoding="utf-8").splitlines()[1])["message"]["content"]
    assert (
        secret not in content
        and len(content) < MAX_STRING + 100
        and content.endswith("cut by somna capture]")
    )


# --- the hooks in Claude Code's settings ------------------------------------------------------------------

SETTINGS = """{
  "permissions": {
    "allow": ["Bash(npm run test:*)"]
  },
  "hooks": {
    "SessionEnd": [
      {
        "hooks": [
          {"type": "command", "command": "~/bin/log-session.sh"}
        ]
      }
    ],
    "PostToolUse": [{"matcher": "Write", "hooks": [{"type": "command", "command": "npx prettier --write"}]}]
  },
  "model": "opus"
}
"""
COMMAND = ["/opt/somna/bin/somna"]
CONTEXT = {"hooks": [{"type": "command", "command": "/opt/somna/bin/somna context", "timeout": 60}]}
CAPTURE = {
    "hooks": [
        {"type": "command", "command": "/opt/somna/bin/somna capture --harness claude-code", "timeout": 60}
    ]
}


@pytest.fixture
def machine(tmp_path: Path) -> tuple[Path, Path]:
    home, project = tmp_path / "machine" / "home", tmp_path / "machine" / "project"
    home.mkdir(parents=True)
    project.mkdir()
    return home, project


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("scope", ["user", "project"])
def test_install_adds_the_hooks_keeps_the_others_and_uninstall_restores_the_bytes(
    machine: tuple[Path, Path], scope: str
) -> None:
    home, project = machine
    path = settings_path(scope, home=home, project=project)
    path.parent.mkdir(parents=True)
    path.write_text(SETTINGS, encoding="utf-8")
    before = tree(home.parent)

    lines = apply(plan_hooks(scope, home=home, project=project, command=COMMAND), dry_run=False)

    after = json.loads(path.read_text(encoding="utf-8"))
    original = json.loads(SETTINGS)
    assert after["hooks"]["SessionEnd"] == [*original["hooks"]["SessionEnd"], CAPTURE]
    assert after["hooks"]["PreCompact"] == [CAPTURE]
    assert after["hooks"]["SessionStart"] == [CONTEXT]
    del after["hooks"]["PreCompact"], after["hooks"]["SessionStart"], after["hooks"]["SessionEnd"][1]
    assert after == original
    assert lines == [f"added somna to {path} (backup: {path}.somna-backup)"]
    snapshot = tree(home.parent)
    again = plan_hooks(scope, home=home, project=project, command=COMMAND)
    assert apply(again, dry_run=False) == [f"{path}: somna is already installed"]
    assert tree(home.parent) == snapshot

    assert apply(uninstall_hooks(scope, home=home, project=project), dry_run=False) == [
        f"restored {path} from {path}.somna-backup"
    ]
    assert tree(home.parent) == before
    assert apply(uninstall_hooks(scope, home=home, project=project), dry_run=False) == [
        f"{path}: somna is not installed"
    ]


def test_a_new_command_updates_the_hooks_and_uninstall_cuts_only_them(machine: tuple[Path, Path]) -> None:
    home, project = machine
    path = settings_path("user", home=home, project=project)
    path.parent.mkdir(parents=True)
    path.write_text(SETTINGS, encoding="utf-8")
    apply(plan_hooks("user", home=home, project=project, command=COMMAND), dry_run=False)

    lines = apply(
        plan_hooks("user", home=home, project=project, command=["/new/python", "-m", "somna"]), dry_run=False
    )

    hooks = json.loads(path.read_text(encoding="utf-8"))["hooks"]
    assert lines[0].startswith(f"updated somna in {path}")
    assert (
        hooks["PreCompact"][0]["hooks"][0]["command"] == "/new/python -m somna capture --harness claude-code"
    )
    assert len(hooks["SessionEnd"]) == 2
    path.write_text(path.read_text(encoding="utf-8").replace('"opus"', '"sonnet"'), encoding="utf-8")
    assert apply(uninstall_hooks("user", home=home, project=project), dry_run=False)[0].startswith(
        f"removed somna from {path}"
    )
    assert path.read_text(encoding="utf-8") == SETTINGS.replace('"opus"', '"sonnet"')


def test_hooks_in_a_missing_file_are_created_and_deleted_with_their_folder(
    machine: tuple[Path, Path],
) -> None:
    home, project = machine
    path = settings_path("project", home=home, project=project)

    apply(plan_hooks("project", home=home, project=project, command=COMMAND), dry_run=False)
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "hooks": {"SessionStart": [CONTEXT], "SessionEnd": [CAPTURE], "PreCompact": [CAPTURE]}
    }
    assert apply(uninstall_hooks("project", home=home, project=project), dry_run=False) == [
        f"deleted {path} (somna created it)"
    ]
    assert list(project.iterdir()) == []


def test_settings_somna_cannot_read_are_refused_untouched(machine: tuple[Path, Path]) -> None:
    home, project = machine
    path = settings_path("user", home=home, project=project)
    path.parent.mkdir(parents=True)
    for text in ('{"hooks": {"SessionEnd": {"hooks": []}}}', '{"hooks": [}', '{"hooks": "none"}'):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InstallError, match="changed nothing"):
            plan_hooks("user", home=home, project=project, command=COMMAND)
        assert path.read_text(encoding="utf-8") == text


def test_claude_config_dir_moves_the_user_settings(tmp_path: Path) -> None:
    assert settings_path(
        "user", home=tmp_path, project=tmp_path, environ={"CLAUDE_CONFIG_DIR": "/c"}
    ) == Path("/c/settings.json")
    assert settings_path("user", home=tmp_path, project=tmp_path) == tmp_path / ".claude" / "settings.json"


def test_somna_install_claude_code_writes_server_and_hooks(
    machine: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    home, project = machine

    assert run_install("claude-code", "project", False, False, home=home, project=project) == 0

    out = capsys.readouterr().out
    assert f"added somna to {project / '.mcp.json'}" in out and "SessionEnd and PreCompact" in out
    hooks = json.loads((project / ".claude" / "settings.json").read_text(encoding="utf-8"))["hooks"]
    assert "capture --harness claude-code" in hooks["SessionEnd"][0]["hooks"][0]["command"]
    assert run_install("claude-code", "project", False, True, home=home, project=project) == 0
    assert list(project.iterdir()) == []
    assert run_install("claude-code", "project", False, False, home=home, project=project, hooks=False) == 0
    assert not (project / ".claude").exists()
