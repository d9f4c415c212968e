"""Redaction is stricter now that a store may leave the machine: a machine-made token a few words after
"secret", "password", "token" is redacted; ordinary identifiers, hashes and UUIDs are not."""

from __future__ import annotations

import sysconfig
import time
from pathlib import Path

import pytest

from somna import redaction
from somna.secret_words import near_words

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "staging creds AKIAQWERTYUIOPASDFGH with secret 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",
            "Qm8vT2xZrW4pLk9sN3bY7hJd5fGc1aXe6uVi0oPq",
        ),
        ("the api token is 9fK2mQ7xLp3ZrT8vWb1Nc4Yd for the sandbox", "9fK2mQ7xLp3ZrT8vWb1Nc4Yd"),
        ("password for staging: Xk82LmQp0ZrT5vWb7NcA", "Xk82LmQp0ZrT5vWb7NcA"),
        (
            "aws secret is wJalrXUtnFEMI/K7MDENG/bPxRfiCYzKLMNOPQ12",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzKLMNOPQ12",
        ),
        ("API key: zaCELgL0imfnc8mVLWwsAawjYr4Rx-Af50DDqtlx", "zaCELgL0imfnc8mVLWwsAawjYr4Rx-Af50DDqtlx"),
        ("the deploy token: 3f2a9c8b7d6e5f4a3b2c1d0e9f8a7b6c", "3f2a9c8b7d6e5f4a3b2c1d0e9f8a7b6c"),
        ("the bot credentials are `ghJ7kL2mN9pQ4rS6tU8vW1xY3zA5bC`", "ghJ7kL2mN9pQ4rS6tU8vW1xY3zA5bC"),
    ],
)
def test_a_machine_made_token_next_to_a_secret_word_is_redacted(text: str, secret: str) -> None:
    redacted, findings = redaction.redact(text)
    assert secret not in redacted and findings
    assert "[REDACTED:" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "fixed in commit 3f2a9c8b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a after the token refresh bug",
        "the token refresh landed in commit a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "the access token expires; see sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "token bucket state lives at /var/lib/app/5f0c6a1e-9b2d-4c3e-8f7a-1b2c3d4e5f6a/state",
        "token for request 5f0c6a1e-9b2d-4c3e-8f7a-1b2c3d4e5f6a timed out",
        "the secret sauce is RefreshTokenTimeoutException",
        "the register token from DINOv2-with-registers",
        "vocab index for the token ids embedded by Gemma3nMultimodalEmbedder",
        "tokens: CohereV2ChatResponseUsageTokens",
        "token: use max_tokens_per_request_2048 here",
        "secret_key_base_v2_production_settings is read from the environment",
        "password: rotated monthly by the platform team",
        "the api key placeholder is EXAMPLEKEY1234567890abcdEFGH",
    ],
)
def test_ordinary_identifiers_hashes_and_uuids_are_left_alone(text: str) -> None:
    assert redaction.redact(text) == (text, [])


def test_the_rule_is_quiet_on_real_code_and_prose() -> None:
    """somna's own sources and docs and the Python standard library: no token next to a secret word."""
    files = [
        *sorted((REPO / "src").rglob("*.py")),
        *sorted((REPO / "docs").glob("*.md")),
        REPO / "README.md",
        *sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))[:3000],
    ]
    t0 = time.perf_counter()
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [(path.name, text[s:e]) for s, e, _ in near_words(text)]
    assert len(files) > 1000
    assert found == []
    assert time.perf_counter() - t0 < 15
