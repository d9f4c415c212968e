"""Detect and redact likely secrets before anything is stored.

Pure and stdlib-only: it sits on the MCP server's write path, so importing it compiles a few regexes and
nothing more. ``scan`` finds likely secrets, ``redact`` replaces each with ``[REDACTED:<kind>]`` and
``apply_policy`` applies the store's policy (redact | refuse | allow).

Two families of rules:

- *Shaped* secrets, known by their own format wherever they appear: AWS access key ids, GCP API keys,
  GitHub/GitLab/Slack/Stripe/OpenAI/Anthropic tokens, JWTs, PEM private key blocks, the ``private_key`` of a
  GCP service-account JSON, Azure ``AccountKey=``/``sig=`` values and ``aws_secret_access_key`` values.
- *Named* secrets: the value of an assignment whose name says it is one (``DB_PASSWORD=...``,
  ``export API_KEY=...``, ``password: ...``, ``"client_secret": "..."``, ``x-api-key: ...``), the password of
  a connection string and the credential of an HTTP ``Authorization`` header. Only the value is redacted, so
  ``PASSWORD=`` or ``postgres://app:[REDACTED:password]@db:5432/x`` stay readable and useful.

Deliberately *not* secrets:

- placeholders: empty or shorter than 4 characters, ``<your token>``, ``${VAR}``, ``$VAR``, ``%s``,
  ``{{ var }}``, ``xxxx``, ``****``, anything with ``...`` or "example" in it (so AWS's documented
  ``AKIAIOSFODNN7EXAMPLE``), and well-known defaults such as ``changeme``/``changeit``/``password``: they
  protect nothing, and "the dev database still uses changeme" is worth remembering;
- code and references: ``getpass()``, ``os.environ["TOKEN"]``, ``self.token``, a bare identifier on the right
  of ``password = ...`` or ``password: ...`` unless it has a digit (``hunter2``), ``f(token=tok, ...)``,
  type hints (``password: str``), ``op://``/``vault:``/``arn:`` references and file paths;
- names that only mention a secret: ``password_hash``, ``max_tokens``, ``token_count``, ``next_token``,
  ``TOKEN_URL``; prose ("the token bucket refills at 10/s"; "password: rotated monthly").

There is no free-standing high-entropy rule: a random-looking string is only a secret when a name or a format
says so, which keeps git SHAs, UUIDs, digests and base64 data out of the way. Findings carry a kind and
offsets, never the value, so they may be logged.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

POLICIES = ("redact", "refuse", "allow")


@dataclass(frozen=True)
class Finding:
    """A likely secret at ``text[start:end]``; it holds no part of the value, so it is safe to log."""

    kind: str
    start: int
    end: int


class SecretRefused(ValueError):
    """The text holds likely secrets and the policy is "refuse"."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        kinds = ", ".join(sorted({f.kind for f in findings}))
        super().__init__(f"refused to store text with {len(findings)} likely secret(s): {kinds}")


_SHAPES = [  # (kind, prefixes of its tokens, regex); the first kind whose prefix fits names a token
    ("anthropic_key", ("sk-ant-",), r"sk-ant-[a-z]{2,10}\d{2}-[A-Za-z0-9_\-]{20,300}"),
    ("openai_key", ("sk-",), r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,300}"),
    ("github_token", ("gh",), r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"),
    ("gitlab_token", ("gl",), r"gl(?:pat|dt|rt|ptt|cbt|oas)-[A-Za-z0-9_\-]{20,255}"),
    ("slack_token", ("xox", "xapp"), r"xox[abposr]-[A-Za-z0-9\-]{10,250}|xapp-\d-[A-Za-z0-9\-]{10,250}"),
    (
        "slack_webhook",
        ("https:",),
        r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/\w{16,64}",
    ),
    (
        "stripe_key",
        ("sk_", "rk_", "whsec_"),
        r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,247}|whsec_[A-Za-z0-9]{24,64}",
    ),
    ("gcp_api_key", ("AIza",), r"AIza[A-Za-z0-9_\-]{35}"),
    ("aws_access_key", ("A",), r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"),
    ("jwt", ("eyJ",), r"eyJ[A-Za-z0-9_\-]{10,4096}\.eyJ[A-Za-z0-9_\-]{10,8192}\.[A-Za-z0-9_\-]{10,4096}"),
]
# No groups and no leading lookbehind, so that re can skip ahead to the shapes' first letters (scan checks
# the boundary before a token); this makes the pass several times faster.
_SHAPED = re.compile("(?:" + "|".join(p for _, _, p in _SHAPES) + r")(?![A-Za-z0-9_\-])")
_PEM = re.compile(  # a whole block, or a truncated one: the BEGIN line and the base64 lines after it
    r"(-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----(?:(?:[^-]|-(?!----)){0,20000}+"
    r"-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|(?:(?:\r?\n|\\n)[A-Za-z0-9+/=]{16,100}){1,500}+))"
)
_GCP_JSON = re.compile(r"\"private_key\"[ \t]*:[ \t]*\"(-----BEGIN[^\"]{20,20000}+)\"")
_AWS_SECRET = re.compile(
    r"(?:[Ss]ecret|SECRET)[_\-]?(?:[Aa]ccess|ACCESS)[_\-]?(?:[Kk]ey|KEY)[\"']?[ \t]*[:=][ \t]*[\"']?"
    r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_AZURE_KEY = re.compile(r"(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/]{20,200}={0,2})")
_AZURE_SAS = re.compile(r"[?&]sig=([A-Za-z0-9%+/]{20,200}(?:%3D|=){0,2})")
_AUTH_HEADER = re.compile(
    r"(?:[Aa]uthorization|AUTHORIZATION)[\"']?[ \t]*[:=][ \t]*[\"']?(?i:bearer|basic|token|bot)[ \t]+"
    r"([A-Za-z0-9._~+/\-]{8,4096}+=*)"
)
_URL_PASSWORD = re.compile(  # scheme://user:PASSWORD@host; greedy, so it backtracks to the authority's last @
    r"://(?<=[A-Za-z0-9]://)[^\s:/@?#\"'<>]{0,200}:"
    r"([^\s/?#\"'<>()\[\]`]{1,200})@(?=[\w\[])"
)
_SQL_PASSWORD = re.compile(
    r"(?i:\bwith[ \t]+(?:encrypted[ \t]+)?password|\bidentified[ \t]+by)[ \t]+'([^'\n]{1,200}+)'"
)
_CONTEXT = [  # (priority: the lower wins an overlap, kind, a needle that the lowercased text must hold,
    #           the pattern, whose group 1 is the secret)
    (0, "gcp_service_account", '"private_key"', _GCP_JSON),
    (1, "private_key", "private key", _PEM),
    (3, "aws_secret_key", "access", _AWS_SECRET),
    (3, "azure_storage_key", "key=", _AZURE_KEY),
    (3, "azure_sas", "sig=", _AZURE_SAS),
    (4, "http_auth", "authorization", _AUTH_HEADER),
    (5, "password", "://", _URL_PASSWORD),
    (6, "password", "password", _SQL_PASSWORD),
    (6, "password", "identified", _SQL_PASSWORD),
]
_WORD = r"passw(?:or)?d|passphrase|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|auth[_\-]?key"
_ASSIGN = re.compile(  # group 1 quote, 2 name, 3 space before op, 4 op, 5 space after op
    r"(?<![\w.])([\"']?)((?=[A-Za-z_])[\w.\-]{0,40}?(?i:" + _WORD + r")[\w.\-]{0,40})\1"
    r"([ \t]*)(:=|=>|=(?!=)|:(?![:=]))([ \t]*)"
)
_VALUE = re.compile(  # group 1 "double-quoted", 2 'single-quoted', 3 bare
    r"\"((?:[^\"\\\n]|\\.){1,1000}+)\"|'([^'\n]{1,1000}+)'|([^\s'\"`,;&()\[\]{}<>|]{1,4096}+)"
)
_WORD_CHAR = re.compile(r"\w")
_KEY_BODY = re.compile(r"[A-Za-z0-9+/]{32}")
_PLAIN_WORD = re.compile(r"[A-Za-z][a-z]*")
_EOL = re.compile(r"[ \t]*[,;}\]]?[ \t]*(?:#[^\n]*)?(?:\r?\n|\Z)")
_NAME_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_IDENT = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_PATH = re.compile(r"(?:~|\.{1,2})?/[\w.\-/]*|[A-Za-z]:\\[\w.\-\\ ]*")
_PLACEHOLDER = re.compile(
    r"^[\W_xX]*$|x{5,}|\*{3}|\.\.\.|…|\$\{|\{\{|example|placeholder|redacted|\byour|(?:\b|_)here\b"
    r"|^(?:op://|vault:|arn:|env:|file:)",
    re.IGNORECASE,
)
_PLACEHOLDER_WORDS = frozenset(
    "changeme change_me change-me changeit password passwd pass secret token apikey api_key api-key none null"
    " nil true false undefined example placeholder redacted todo tbd fixme required optional default empty"
    " hidden masked notset unset string str bytes int bool any secretstr secretbytes".split()
)
_TAILS = frozenset("key value val base b64 base64 hex raw plain plaintext cleartext".split())
_PREFIXES = frozenset(
    "max min num total count next page prev previous continuation sync is has use no require requires enable"
    " enabled show hide forgot".split()
)
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "secret", "token")
_KEY_QUALIFIERS = frozenset("api access private auth secret".split())


def _is_placeholder(value: str) -> bool:
    v = value.strip()
    if len(v) < 4 or len(set(v)) == 1 or v.lower() in _PLACEHOLDER_WORDS:
        return True
    return v[0] in "$%{<[:@*#" or v[-1] in ">}%" or _PLACEHOLDER.search(v) is not None


def _random_enough(kind: str, token: str) -> bool:
    if len(set(token)) < min(10, len(token) // 3) or _PLACEHOLDER.search(token):
        return False
    if kind == "openai_key":  # real keys mix cases and digits; kebab-case words (sk-fading-circle-...) do not
        return any(c.isdigit() for c in token) and any(c.isupper() for c in token)
    return True


def _random_identifier(value: str) -> bool:
    """``hunter2``, ``khGzRjqYzX`` are values; ``new_password``, ``accessToken``, ``getpass`` are code."""
    if "_" in value:
        return False
    return any(c.isdigit() for c in value) or any(len(w) < 3 for w in _NAME_WORDS.findall(value))


def _name_kind(name: str) -> str | None:
    """The kind of secret a name announces (``password``/``secret``), or None when it only mentions one."""
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    for i in range(len(words) - 1, -1, -1):
        w = words[i]
        if w.endswith(_SECRET_ENDINGS) or w in ("apikey", "accesskey", "privatekey", "authkey"):
            first = i
        elif w == "key" and i and words[i - 1] in _KEY_QUALIFIERS:
            first = i - 1
        else:
            continue
        if any(t not in _TAILS and not t.isdigit() for t in words[i + 1 :]):
            return None
        if any(p in _PREFIXES for p in words[:first]):
            return None
        return "password" if "pass" in w else "secret"
    return None


def _assignments(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    pos = 0
    while (m := _ASSIGN.search(text, pos)) is not None:
        pos = m.end()
        kind = _name_kind(m.group(2))
        if kind is None or (v := _VALUE.match(text, pos)) is None:
            continue
        pos = v.end()
        if v.lastindex != 3:  # a quoted literal: a secret unless it is a placeholder
            start, end = v.span(v.lastindex or 1)
            if not _is_placeholder(text[start:end]):
                found.append((start, end, kind))
            continue
        start, end = v.span(3)
        value = text[start:end].rstrip(".:!?")  # for the checks; redact "hunter2." whole
        op, loose = m.group(4), bool(m.group(3) or m.group(5)) or m.group(4) != "="
        if _is_placeholder(value) or text[end : end + 1] in ("(", "[", "{") or _PATH.fullmatch(value):
            continue
        ident = _IDENT.fullmatch(value)
        if ident is not None:  # code: a reference (self.token), a kwarg (f(token=tok)) or a plain word
            if ident.group(1) or (not loose and text[end : end + 1] in (",", ")")):
                continue
            if loose and not _random_identifier(value):
                continue
        if op == ":" and not _EOL.match(text, end):  # "password: is rotated monthly" is prose
            continue
        found.append((start, end, kind))
    return found


def _select(candidates: list[tuple[int, int, int, str]]) -> list[Finding]:
    """Keep the best-priority candidates that do not overlap, sorted by start."""
    starts: list[int] = []
    ends: list[int] = []
    kept: list[Finding] = []
    for _, start, end, kind in sorted(candidates):
        i = bisect_left(starts, start)
        if (i and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        kept.insert(i, Finding(kind, start, end))
    return kept


def scan(text: str) -> list[Finding]:
    """Find likely secrets in ``text``: non-overlapping findings sorted by offset."""
    candidates: list[tuple[int, int, int, str]] = []
    for m in _SHAPED.finditer(text):
        token, start = m.group(), m.start()
        kind = next(kind for kind, prefixes, _ in _SHAPES if token.startswith(prefixes))
        if (start == 0 or not _WORD_CHAR.match(text, start - 1)) and _random_enough(kind, token):
            candidates.append((2, start, m.end(), kind))
    low = text.lower()
    for priority, kind, needle, pattern in _CONTEXT:
        if needle not in low:
            continue
        for m in pattern.finditer(text):
            secret = m.group(1)
            if kind == "private_key" and _KEY_BODY.search(secret) is None:
                continue  # a BEGIN/END pair around prose, not a key
            if kind not in ("private_key", "gcp_service_account") and _is_placeholder(secret):
                continue
            if kind in ("password", "http_auth") and _PLAIN_WORD.fullmatch(secret):
                continue  # "Authorization: Basic authentication is..."
            candidates.append((priority, m.start(1), m.end(1), kind))
    if any(word in low for word in ("pass", "secret", "token", "key")):
        candidates.extend((6, start, end, kind) for start, end, kind in _assignments(text))
    return _select(candidates)


def redact(text: str) -> tuple[str, list[Finding]]:
    """Replace each likely secret with ``[REDACTED:<kind>]``; return the new text and the findings."""
    findings = scan(text)
    parts: list[str] = []
    last = 0
    for f in findings:
        parts += [text[last : f.start], f"[REDACTED:{f.kind}]"]
        last = f.end
    parts.append(text[last:])
    return "".join(parts), findings


def apply_policy(text: str, policy: str = "redact") -> tuple[str, list[Finding]]:
    """Apply a secrets policy: "redact" them, "refuse" (raise SecretRefused) or "allow" the text as it is."""
    if policy not in POLICIES:
        raise ValueError(f"unknown secrets policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if policy == "redact":
        return redact(text)
    findings = scan(text)
    if findings and policy == "refuse":
        raise SecretRefused(findings)
    return text, findings
