"""Secret detection and redaction, against a corpus of fake secrets and of look-alikes."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from somna.redaction import POLICIES, Finding, SecretRefused, apply_policy, redact, scan

DATA = Path(__file__).parent / "data" / "secrets"


@dataclass(frozen=True)
class Case:
    label: str
    text: str
    secrets: tuple[tuple[int, int], ...]  # spans of the «marked» secrets in text (markers removed)


def load_corpus(path: Path) -> list[Case]:
    """Blocks of '=== <label>' then the case's text; «…» marks a secret and is removed from the text."""
    cases: list[Case] = []
    for block in re.split(r"^=== ", path.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        label, _, raw = block.partition("\n")
        raw = raw.rstrip("\n")
        text, spans, pos = "", [], 0
        for m in re.finditer(r"«(.*?)»", raw, flags=re.DOTALL):
            text += raw[pos : m.start()]
            spans.append((len(text), len(text) + len(m.group(1))))
            text += m.group(1)
            pos = m.end()
        cases.append(Case(label.strip(), text + raw[pos:], tuple(spans)))
    return cases


POSITIVES = load_corpus(DATA / "positives.txt")
NEGATIVES = load_corpus(DATA / "negatives.txt")


def test_corpus_is_big_and_covers_every_kind() -> None:
    assert len(POSITIVES) >= 60 and len(NEGATIVES) >= 60
    assert all(case.secrets for case in POSITIVES)
    assert not any(case.secrets for case in NEGATIVES)
    kinds = {case.label for case in POSITIVES}
    assert kinds >= {
        "aws_access_key", "aws_secret_key", "gcp_api_key", "gcp_service_account", "azure_storage_key",
        "github_token", "gitlab_token", "openai_key", "anthropic_key", "slack_token", "stripe_key",
        "private_key", "jwt", "password", "secret", "http_auth",
    }  # fmt: skip


@pytest.mark.parametrize("case", POSITIVES, ids=lambda c: c.label)
def test_positive_is_found_with_its_kind_and_exact_span(case: Case) -> None:
    found = {(f.start, f.end): f.kind for f in scan(case.text)}
    for span in case.secrets:
        assert found.get(span) == case.label, f"{case.label}: expected {span}, found {found}"


@pytest.mark.parametrize("case", POSITIVES, ids=lambda c: c.label)
def test_redaction_removes_the_secret_and_keeps_the_rest(case: Case) -> None:
    redacted, findings = redact(case.text)
    for start, end in case.secrets:
        assert case.text[start:end] not in redacted
    assert f"[REDACTED:{case.label}]" in redacted
    # Everything outside the secrets survives, in order.
    outside = re.split("|".join(re.escape(case.text[s:e]) for s, e in case.secrets), case.text)
    pos = 0
    for piece in outside:
        pos = redacted.index(piece, pos) + len(piece)


@pytest.mark.parametrize("case", POSITIVES + NEGATIVES, ids=lambda c: c.label)
def test_redact_is_idempotent(case: Case) -> None:
    once, _ = redact(case.text)
    twice, findings = redact(once)
    assert twice == once and findings == []


@pytest.mark.parametrize("case", NEGATIVES, ids=lambda c: c.label)
def test_negative_is_not_flagged(case: Case) -> None:
    assert scan(case.text) == []


def test_keeps_the_useful_parts_of_assignments_and_urls() -> None:
    text = "PASSWORD=hunter2\nDATABASE_URL=postgres://app:s3cr3t-pw@db.internal:5432/x\n"
    assert redact(text)[0] == (
        "PASSWORD=[REDACTED:password]\nDATABASE_URL=postgres://app:[REDACTED:password]@db.internal:5432/x\n"
    )
    assert redact('{"api_key": "k3y-0f-th3-d4y"}')[0] == '{"api_key": "[REDACTED:secret]"}'
    assert redact("Authorization: Bearer abc123DEF456ghi")[0] == "Authorization: Bearer [REDACTED:http_auth]"
    # a scheme said twice, and a header pasted twice into itself, still hide the token
    assert redact("Authorization: Bearer Bearer abc123DEF456ghi")[0] == (
        "Authorization: Bearer Bearer [REDACTED:http_auth]"
    )
    assert redact("Authorization: Bearer Authorization: Bearer abc123DEF456ghi")[0] == (
        "Authorization: Bearer Authorization: Bearer [REDACTED:http_auth]"
    )


def test_shaped_secret_wins_over_the_assignment_around_it() -> None:
    token = "ghp_" + "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5"
    assert redact(f"GITHUB_TOKEN={token}")[0] == "GITHUB_TOKEN=[REDACTED:github_token]"


def test_findings_are_sorted_non_overlapping_and_hold_no_value() -> None:
    secret = "Zq8pL2mN4vB6xC1"
    text = f"a=1 PASSWORD={secret} b=2 API_KEY={secret}x\npostgres://u:{secret}@h/db"
    findings = scan(text)
    assert len(findings) == 3
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:], strict=False))
    for f in findings:
        assert secret not in repr(f) and secret not in str(f)
        assert set(vars(f)) == {"kind", "start", "end"}


def test_policies() -> None:
    text = "deploy with PASSWORD=Zq8pL2mN4vB6xC1"
    assert apply_policy(text) == redact(text)
    assert apply_policy(text, "redact")[0] == "deploy with PASSWORD=[REDACTED:password]"
    assert apply_policy(text, "allow") == (text, scan(text))
    with pytest.raises(SecretRefused) as refused:
        apply_policy(text, "refuse")
    assert "password" in str(refused.value) and "Zq8pL2mN4vB6xC1" not in str(refused.value)
    assert refused.value.findings == scan(text)
    assert isinstance(refused.value, ValueError)
    assert apply_policy("nothing to see", "refuse") == ("nothing to see", [])
    with pytest.raises(ValueError, match="unknown secrets policy"):
        apply_policy("nothing to see", "ignore")
    assert POLICIES == ("redact", "refuse", "allow")


def test_refusal_names_every_kind_and_no_value() -> None:
    case = next(c for c in POSITIVES if c.label == "github_token")
    text = case.text + "\nPASSWORD=Zq8pL2mN4vB6xC1"
    with pytest.raises(SecretRefused) as refused:
        apply_policy(text, "refuse")
    message = str(refused.value)
    assert "github_token" in message and "password" in message
    assert not any(case.text[s:e] in message for s, e in case.secrets) and "Zq8pL2mN4vB6xC1" not in message


def test_finding_is_frozen() -> None:
    f = Finding("jwt", 0, 10)
    with pytest.raises(AttributeError):
        f.kind = "x"  # type: ignore[misc]


def test_huge_input_is_scanned_in_reasonable_time() -> None:
    rng = random.Random(7)
    pieces = [c.text for c in POSITIVES + NEGATIVES]
    prose = "The token bucket refills at 10/s; password_hash is bcrypt; see commit a1b2c3d4e5f6. " * 20
    parts: list[str] = []
    size = 0
    while size < 5_000_000:
        piece = rng.choice(pieces) if rng.random() < 0.2 else prose
        parts.append(piece)
        size += len(piece) + 1
    text = "\n".join(parts)
    started = time.perf_counter()
    redacted, findings = redact(text)
    assert time.perf_counter() - started < 10
    assert findings and len(redacted) < len(text)


@pytest.mark.parametrize(
    "text",
    [
        "a" * 100_000,
        "=" * 100_000,
        "password" * 20_000,
        "password=" * 20_000,
        "token_hash=" * 20_000,
        "password: " * 20_000,
        '"password": "' * 20_000,
        "sk-" + "a-" * 50_000,
        "ghp_" * 30_000,
        "eyJ" + "a" * 50_000 + "." + "eyJ" * 20_000,
        "-----BEGIN PRIVATE KEY-----" * 5_000,
        "-----BEGIN PRIVATE KEY-----\n" + "-" * 100_000,
        "-----BEGIN PRIVATE KEY-----\n" + "A" * 100_000,
        "postgres://" + "u:" * 50_000 + "@",
        "https://a:" + "b" * 100_000 + "@",
        "Authorization: Bearer " + "A" * 100_000,
        "a:a@" * 30_000,
        "x" + " " * 100_000 + "=",
        "\\" * 100_000,
        '"' + "\\" * 100_000,
        '\\"' * 50_000,
        "--password " * 20_000,
        "password is " * 20_000,
        "<password>" * 20_000,
        "curl " + "x" * 100_000,
        "login" + " -p" * 50_000,
        "machine " * 20_000,
        "create user " * 10_000 + "identified by '",
        "sk-ant-" * 20_000,
        "AKIA" * 30_000,
        "eyJ" * 50_000,
        "a." * 50_000,
        "SG." * 50_000,
        ": " * 50_000,
    ],
    ids=lambda t: repr(t[:24]),
)
def test_pathological_input_does_not_hang(text: str) -> None:
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 5


FRAGMENTS = st.sampled_from(
    [
        "PASSWORD", "password", "token", "api_key", "=", ": ", " ", "\n", '"', "'", "\\", "hunter2",
        "Zq8pL2mN", "postgres://", "u:", "@", "h/db", "ghp_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "sk-",
        "eyJ", ".",
        "-----BEGIN PRIVATE KEY-----", "[REDACTED:password]", "Authorization: Bearer ", "--", "<password>",
        "</password>", "$", "{", "}", "x", "AKIA", "ABCDEFGHIJ234567",
    ]
)  # fmt: skip


@settings(max_examples=300, database=None, deadline=None)
@given(st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=30).map("".join))
def test_findings_are_well_formed_and_redaction_is_idempotent_on_any_text(text: str) -> None:
    once, findings = redact(text)
    assert all(0 <= f.start < f.end <= len(text) for f in findings)
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:], strict=False))
    assert redact(once) == (once, [])
