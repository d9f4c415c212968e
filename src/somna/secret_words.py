"""Secrets known by a word next to them: a long machine-made token at most three words after "secret",
"password", "token", "api key" or "credentials" ("staging creds ... with secret Qm8vT2xZrW4pLk9s...").

A rule of redaction.py's, kept here because a store may now leave the machine (`somna sync`) and this is
the one rule that looks at a token's shape and the words before it rather than at a format or a name.
False alarms stay rare: a hex string counts only right after the word ("token: 9f2c...", not "the token
fix landed in commit 3f2a..."), and a UUID, a path, a snake_case name or a token after "sha", "commit",
"digest" or "id" never counts. Stdlib only, like redaction.py.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"(?<![\w/.\-+=@:])[A-Za-z0-9+/_\-]{20,300}={0,2}(?![\w/.\-+=@])")
_WORD = re.compile(  # the secret word, then at most three words before the token (on its line)
    r"(?i:\b(secrets?|pass(?:word|wd|phrase)s?|tokens?|api[ _\-]?keys?|access[ _\-]?keys?|credentials?|creds)\b)"
    r"[\\\"'`]?[ \t]*(?:[:=]|\bis\b|\bwas\b)?(?:[ \t]+[^\s]{1,24}){0,3}?[ \t]*[:=]?[ \t]*[\"'`]?$"
)
# UUID and WORD_RUNS are redaction.py's too
UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_HASH_WORDS = re.compile(r"(?i:\b(?:sha\d*|md5|commit|digest|hash|checksum|uuid|id)\b)")
_PATH_PART = re.compile(r"(?:^|/)[a-z]{3,}(?:/|$)")
_SNAKE = re.compile(r"[a-z0-9]+(?:[_\-][a-z0-9]+)+|[A-Z0-9]+(?:_[A-Z0-9]+)+")
WORD_RUNS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_PLACEHOLDER = re.compile(r"(?i:example|placeholder|redacted|your|x{5,})")


def machine_made(token: str) -> bool:
    """A token a machine made: letters and digits in a mix no name has (not a UUID, a path, snake_case)."""
    if UUID.fullmatch(token) or _SNAKE.fullmatch(token) or _PLACEHOLDER.search(token):
        return False
    if token.startswith(("/", "~")) or "//" in token or _PATH_PART.search(token):
        return False  # a path: /var/lib/app/5f0c...
    if not any(c.isdigit() for c in token) or not any(c.isalpha() for c in token):
        return False
    mixed = any(c.isupper() for c in token) and any(c.islower() for c in token)
    if (
        mixed
    ):  # short case runs (Qm8vT2xZ...), unlike a CamelCase name with a digit (Gemma3nMultimodalEmbedder)
        runs = [w for w in WORD_RUNS.findall(token) if w.isalpha()]
        return len(set(token)) >= 12 and 2 * sum(len(w) <= 2 for w in runs) >= len(runs)
    return len(token) >= 32 and len(set(token)) >= 10


def near_words(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each machine-made token a few words after a secret word."""
    found: list[tuple[int, int, str]] = []
    for m in _TOKEN.finditer(text):
        token = m.group().rstrip("=")
        if not machine_made(token):
            continue
        line_start = text.rfind("\n", 0, m.start()) + 1
        word = _WORD.search(text[max(line_start, m.start() - 80) : m.start()])
        if word is None:
            continue
        between = word.group()[word.end(1) - word.start() :]
        if _HASH_WORDS.search(between):
            continue  # "the token fix, see sha256 e3b0..."
        if _HEX.fullmatch(token) and re.search(r"\w", re.sub(r"\b(?:is|was)\b", "", between)):
            continue  # a hex string is a secret only right after the word ("token: 9f2c..."), not a digest
        kind = "password" if word.group(1).lower().startswith("pass") else "secret"
        found.append((m.start(), m.end(), kind))
    return found
