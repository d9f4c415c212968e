"""Detect and redact likely secrets before anything is stored.

Pure and stdlib-only: it sits on the MCP server's write path, so importing it compiles a few regexes and
nothing more. ``scan`` finds likely secrets, ``redact`` replaces each with ``[REDACTED:<kind>]`` and
``apply_policy`` applies the store's policy (redact | refuse | allow), and ``clean`` is that policy as the
store's write path needs it.

Two families of rules:

- *Shaped* secrets, known by their own format wherever they appear: AWS access key ids, GCP API keys and
  service-account ``private_key``s, GitHub/GitLab/Slack/Stripe/OpenAI/Anthropic/Hugging Face/SendGrid/PyPI/npm
  tokens, JWTs, PEM private key blocks, Azure ``AccountKey=``/``sig=`` and ``aws_secret_access_key`` values.
- *Named* secrets: the value of an assignment whose name says it is one (``DB_PASSWORD=...``, ``export
  API_KEY=...``, ``password: ...``, ``"client_secret": "..."``, ``x-api-key: ...``, ``--password ...``,
  ``<password>...</password>``, also inside JSON-escaped transcripts), a connection string's password, an HTTP
  ``Authorization`` credential, ``curl -u``/``sshpass -p``/``.netrc``/SQL ``IDENTIFIED BY`` passwords, and
  "the password is <random-looking>". Only the value is redacted, so ``PASSWORD=`` and
  ``postgres://app:[REDACTED:password]@db:5432/x`` stay readable and useful.

Deliberately *not* secrets:

- placeholders: shorter than 4 characters, ``<your token>``, ``${VAR}``, ``$VAR``, ``%s``, ``{{ var }}``,
  ``xxxx``, ``****``, anything with ``...`` or "example" in it (so AWS's documented ``AKIAIOSFODNN7EXAMPLE``),
  well-known defaults and dummies (``changeme``, ``changeit``, ``password``, ``test``, ``foo``): they protect
  nothing, and "the dev database still uses changeme" is worth remembering;
- code and references: ``getpass()``, ``os.environ["TOKEN"]``, ``self.token``, ``f(token=tok)``, a bare
  identifier after ``password =`` unless it looks random (``hunter2``), type hints (``password: str``), a
  value that names a secret (``pad_token=eos_token``), ``op://``/``vault:``/``arn:`` references, file paths;
- names that only mention a secret: ``password_hash``, ``max_tokens``, ``token_count``, ``TOKEN_URL``; tokens
  that are no credentials (``next_token``, ``client_token``, ``pad_token="<pad>"``, a UUID ``RequestToken``);
  prose ("the token bucket refills at 10/s", "password: rotated monthly").

There is no free-standing high-entropy rule: a random-looking string is only a secret when a name or a format
says so, which keeps git SHAs, UUIDs, digests and base64 data out of the way. A *word* says so too: a long
machine-made token a few words after "secret", "password" or "token" (secret_words.py), since a store may
leave the machine (`somna sync`). Findings carry a kind and
offsets, never the value, so they may be logged.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left
from dataclasses import dataclass

from somna.errors import InvalidInput
from somna.secret_words import UUID, WORD_RUNS, near_words

log = logging.getLogger("somna.redaction")

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
    ("github_token", ("gh", "github_pat_"), r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"),
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
    ("huggingface_token", ("hf_",), r"hf_[A-Za-z0-9]{34}"),
    ("sendgrid_key", ("SG.",), r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"),
    ("pypi_token", ("pypi-",), r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{16,400}"),
    ("npm_token", ("npm_",), r"npm_[A-Za-z0-9]{36}"),
    ("jwt", ("eyJ",), r"eyJ[A-Za-z0-9_\-]{10,4096}\.eyJ[A-Za-z0-9_\-]{10,8192}\.[A-Za-z0-9_\-]{10,4096}"),
]
# No groups and no leading lookbehind, so that re can skip ahead to the shapes' first letters (scan checks
# the boundary before a token); this makes the pass several times faster.
_SHAPED = re.compile("(?:" + "|".join(p for _, _, p in _SHAPES) + r")(?![A-Za-z0-9_\-])")
_PEM = re.compile(  # a whole block, or a truncated one: the BEGIN line and the base64 lines after it
    # No possessive group repeats here: older CPython 3.11 releases (Debian 12's 3.11.2) match them wrongly
    # and cut the END line off a key. Neither group can backtrack far: `-----` stops the first, a newline
    # starts each repeat of the second, and nothing follows it.
    r"(-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----(?:(?:[^-]|-(?!----)){0,20000}"
    r"-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|(?:(?:\r?\n|\\n)[A-Za-z0-9+/=]{16,100}){1,500}))"
)
_GCP_JSON = re.compile(r"\"private_key\"[ \t]*:[ \t]*\"(-----BEGIN[^\"]{20,20000}+)\"")
_AWS_SECRET = re.compile(
    r"(?:[Ss]ecret|SECRET)[_\-]?(?:[Aa]ccess|ACCESS)[_\-]?(?:[Kk]ey|KEY)[\"']?"
    r"(?:[ \t]*[:=][ \t]*|[ \t]+)[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_AZURE_KEY = re.compile(r"(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/]{20,200}={0,2})")
_AZURE_SAS = re.compile(r"[?&]sig=([A-Za-z0-9%+/]{20,200}(?:%3D|=){0,2})")
_AUTH_HEADER = re.compile(
    r"(?:[Aa]uthorization|AUTHORIZATION)[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?i:bearer|basic|token|bot)[ \t]+)+"
    r"([A-Za-z0-9._~+/\-]{8,4096}+=*)"
)
_URL_PASSWORD = re.compile(  # scheme://user:PASSWORD@host; greedy, so it backtracks to the authority's last @
    r"://(?<=[A-Za-z0-9]://)[^\s:/@?#\"'<>]{0,200}:"
    r"([^\s/?#\"'<>()\[\]`]{1,200})@(?=[\w\[])"
)
_SQL_PASSWORD = re.compile(  # CREATE USER x IDENTIFIED BY '...', ALTER ROLE x WITH LOGIN PASSWORD '...'
    r"(?i:\b(?:user|role)\b[^\n;]{0,100}?(?:\bpassword|\bidentified[ \t]+by))[ \t]+'([^'\n]{1,200}+)'"
)
_PROSE_PASSWORD = re.compile(  # "the admin password is Tr0ub4dor&3"; only a random-looking value counts
    r"(?i:\bpass(?:word|wd|phrase)[ \t]+(?:(?:is|was)(?:[ \t]+(?:changed|set|reset|updated)[ \t]+to)?"
    r"|(?:changed|set|reset|updated)[ \t]+to)[ \t]+)"
    r"[`\"']?([^\s`\"']{4,200}+)"
)
_FLAG = re.compile(  # sshpass -p X, docker login -p X, curl -u user:X, <password>X</password>, .netrc
    r"(?:\bsshpass[ \t]+-p[ \t]*|\blogin\b[^\n]{0,200}?[ \t]-p[ \t]+|\bmachine\b[^\n]{0,200}?\bpassword[ \t]+"
    r"|\bcurl\b[^\n]{0,200}?[ \t](?:-u|--user)[ \t]+['\"]?[^\s:'\"]{1,100}:"
    r"|<(?i:[\w.\-]{0,30}?(?:password|passwd|secret|token|api_?key))>)['\"]?([^\s'\"<]{1,200}+)"
)
_CONTEXT = [  # (priority: the lower wins an overlap, kind, needles: the lowercased text must hold one,
    #           pattern: its group 1 is the secret)
    (0, "gcp_service_account", ('"private_key"',), _GCP_JSON),
    (1, "private_key", ("private key",), _PEM),
    (3, "aws_secret_key", ("access",), _AWS_SECRET),
    (3, "azure_storage_key", ("key=",), _AZURE_KEY),
    (3, "azure_sas", ("sig=",), _AZURE_SAS),
    (4, "http_auth", ("authorization",), _AUTH_HEADER),
    (5, "password", ("://",), _URL_PASSWORD),
    (6, "password", ("password", "identified"), _SQL_PASSWORD),
    (6, "password", ("pass",), _PROSE_PASSWORD),
    (6, "", ("sshpass", "login", "curl", "<", "machine"), _FLAG),  # kind "": by the name before the value
]
_WORD = (
    r"pass(?:w(?:or)?d|phrase)?|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|auth[_\-]?key"
)
_ASSIGN = re.compile(  # group 1 quote, 2 name, 3 space before op, 4 op, 5 space after op
    r"(?<![\w.])([\"']?)((?=[A-Za-z_])[\w.\-]{0,40}?(?i:" + _WORD + r")[\w.\-]{0,40})\\?\1"
    r"([ \t]*)(:=|=>|=(?!=)|:(?![:=])|(?<=[ \t]))([ \t]*)"  # op "" after a space: only for --flag VALUE
)
_VALUE = re.compile(  # group 1 "double-quoted", 2 'single-quoted', 3 \"JSON-escaped\", 4 bare
    r"\"((?:[^\"\\\n]|\\.){1,8192}+)\"|'([^'\n]{1,8192}+)'|\\\"((?:[^\"\\\n]|\\[^\"\n]){1,8192}+)\\\""
    r"|([^\s'\"`,;&()\[\]{}<>|\\]{1,8192}+)"
)
_WORD_CHAR = re.compile(r"\w")
_KEY_BODY = re.compile(r"[A-Za-z0-9+/]{32}")
_PLAIN_WORD = re.compile(r"[A-Za-z][a-z]*")
_EOL = re.compile(r"[ \t]*[;}\]]?[ \t]*(?:#[^\n]*)?(?:\r?\n|\Z|(?:\\r)?\\n|\\?[\"'`])")  # also "\n" in JSON
_IDENT = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_PATH = re.compile(r"(?:~|\.{1,2})?/[\w.\-/]*|[A-Za-z]:\\[\w.\-\\ ]*")
_PLACEHOLDER = re.compile(
    r"^[\W_xX]*$|^my[-_]?(?:pass(?:word)?|pw|secret|token|api[-_]?key|key)$|x{5,}|\*{3}|\.\.\.|…|\$\{|\{\{"
    r"|example|placeholder|redacted|\byour|(?:\b|_)here\b|^(?:op://|vault:|arn:|env:|file:)",
    re.IGNORECASE,
)
_PLACEHOLDER_WORDS = frozenset(
    "changeme change_me change-me changeit password passwd pass secret token apikey api_key api-key none null"
    " nil true false undefined example placeholder redacted todo tbd fixme required optional default empty"
    " hidden masked notset unset string str bytes int bool any secretstr secretbytes value test dummy fake"
    " foo bar foobar sample demo boolean number object unknown bytearray".split()
)
_SECRET_WORDS = tuple("pass password passwd passphrase secret secrets token tokens key keys".split())
_TAILS = frozenset("key value val base b64 base64 hex raw plain plaintext cleartext".split())
_PREFIXES = frozenset(
    "max min num total count next page prev previous continuation sync is has use no require requires enable"
    " enabled show hide forgot public".split()
)
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "secret", "token")
_SECRET_NAMES = frozenset("pass pwd apikey accesskey privatekey authkey".split())
_TOKEN_PREFIXES = frozenset(  # tokens that are no credentials: paging, idempotency, concurrency control
    "next page prev previous continuation sync starting start client request idempotency change lifecycle"
    " action update lock verification cancel resume pagination cursor".split()
)
_KEY_QUALIFIERS = frozenset("api access private auth secret".split())


def _is_placeholder(value: str) -> bool:
    v = value.strip()
    if len(v) < 4 or len(set(v)) == 1 or v.lower() in _PLACEHOLDER_WORDS:
        return True
    return v[0] in "$%{<[:@*#" or v[-1] in ">}%*" or _PLACEHOLDER.search(v) is not None


def _random_enough(kind: str, token: str) -> bool:
    if len(set(token)) < min(10, len(token) // 3) or _PLACEHOLDER.search(token):
        return False
    if kind in ("openai_key", "huggingface_token"):  # real ones mix cases, unlike sk-fading-circle-...
        return any(c.isupper() for c in token) and any(c.islower() for c in token)
    return True


def _looks_random(value: str) -> bool:
    """Machine-made: letters with digits (hunter2) or short case runs (khGzRjqYzX), unlike RefreshTokenT."""
    if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
        return True
    words: list[str] = WORD_RUNS.findall(value)
    return sum(len(w) < 3 and w.isalpha() for w in words) >= 2


def _name_kind(name: str) -> str | None:
    """What a name announces (``password``, ``token``, ``secret``), or None when it only mentions a secret."""
    words = [w.lower() for w in WORD_RUNS.findall(name)]
    for i in range(len(words) - 1, -1, -1):
        w = words[i]
        if w.endswith(_SECRET_ENDINGS) or w in _SECRET_NAMES:
            first = i
        elif w == "key" and i and words[i - 1] in _KEY_QUALIFIERS:
            first = i - 1
        else:
            continue
        if any(t not in _TAILS and not t.isdigit() for t in words[i + 1 :]):
            return None
        if any(p in _PREFIXES or (w.endswith("token") and p in _TOKEN_PREFIXES) for p in words[:first]):
            return None
        return "password" if "pass" in w or w == "pwd" else "token" if w.endswith("token") else "secret"
    return None


def _bare_is_code(value: str, after: str, op: str, loose: bool, named: str) -> bool:
    """Whether an unquoted value is code rather than a literal (``after``: the character after it)."""
    if after in ("(", "[", "{") or _PATH.fullmatch(value):
        return True  # a call, an index, a path
    ident = _IDENT.fullmatch(value)
    if ident is not None:
        if (ident.group(1) and not (len(value) > 30 and _looks_random(value))) or (
            not loose and after in (",", ")")
        ):
            return True  # self.token (but SG.x.y is a key), f(token=tok)
        if loose and ("_" in value or not _looks_random(value)):  # password = new_password
            return not (op == ":" and named == "password" and value.islower())  # YAML password: hunter
    return False


def _assignments(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    pos = 0
    while (m := _ASSIGN.search(text, pos)) is not None:
        pos = m.end()
        if not m.group(4) and text[m.start(2) - 2 : m.start(2)] != "--":
            continue  # "NAME VALUE" is an assignment only for command-line flags: --password VALUE
        named = _name_kind(m.group(2))
        if named is None or (v := _VALUE.match(text, pos)) is None:
            continue
        pos = v.end()
        group = v.lastindex or 1
        start, end = v.span(group)
        value = text[start:end].rstrip(".:!?") if group == 4 else text[start:end]  # redact "pw." whole
        if _is_placeholder(value) or any(w.lower().endswith(_SECRET_WORDS) for w in WORD_RUNS.findall(value)):
            continue  # a placeholder, or a value that names a secret: pad_token=eos_token, key: PrivateKeyT
        if named != "password" and (not any(c.isalpha() for c in value) or " " in value):
            continue  # keys and tokens have letters and no spaces: "lastModifiedSecret": 1556312220
        if not m.group(4) and named != "password" and not _looks_random(value):
            continue  # docker build --secret id=npmrc,src=...
        if named == "token" and (len(value) < 8 or not _looks_random(value) or UUID.fullmatch(value)):
            continue  # tokens are machine-made: "pad_token": "<pad>" is vocabulary, a UUID a request id
        if group == 4:
            op, loose = m.group(4), bool(m.group(3) or m.group(5)) or m.group(4) != "="
            if _bare_is_code(value, text[end : end + 1], op, loose, named):
                continue
            if op == ":" and (not m.group(5) or not _EOL.match(text, end)):
                continue  # YAML puts a space after the colon; "password: is rotated monthly" is prose
        found.append((start, end, "password" if named == "password" else "secret"))
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


def _context_kind(kind: str, pattern: re.Pattern[str], m: re.Match[str]) -> str | None:
    """The kind of a context rule's match, or None when its group 1 is no secret after all."""
    secret, prefix = m.group(1), m.group()[: m.start(1) - m.start()].lower()
    if not kind:  # _FLAG: <password>, <api_key>, sshpass -p, curl -u user:
        kind = "secret" if prefix.startswith("<") and "pass" not in prefix else "password"
    if kind == "private_key":
        return kind if _KEY_BODY.search(secret) else None  # not a BEGIN/END pair around prose
    if kind == "gcp_service_account":
        return kind
    if _is_placeholder(secret) or (kind == "http_auth" and _PLAIN_WORD.fullmatch(secret)):
        return None  # "Authorization: Basic authentication is..."
    if (pattern is _PROSE_PASSWORD or kind == "secret") and not _looks_random(secret.rstrip(".,;:!?)")):
        return None  # "the password is stored in Vault", "<token>true</token>"
    return kind


def scan(text: str) -> list[Finding]:
    """Find likely secrets in ``text``: non-overlapping findings sorted by offset."""
    candidates: list[tuple[int, int, int, str]] = []
    for m in _SHAPED.finditer(text):
        token, start = m.group(), m.start()
        kind = next((kind for kind, prefixes, _ in _SHAPES if token.startswith(prefixes)), "secret")
        if (start == 0 or not _WORD_CHAR.match(text, start - 1)) and _random_enough(kind, token):
            candidates.append((2, start, m.end(), kind))
    low = text.lower()
    for priority, kind, needles, pattern in _CONTEXT:
        if not any(needle in low for needle in needles):
            continue
        at = 0
        while found := pattern.search(text, at):
            named = _context_kind(kind, pattern, found)
            if named is not None:
                candidates.append((priority, found.start(1), found.end(1), named))
            # a match that is no secret may have swallowed the start of one: "Authorization: Bearer
            # Authorization: Bearer <token>" (a header pasted twice) is looked at again from its value
            at = found.end() if named is not None else max(found.start(1), found.start() + 1)
    if any(word in low for word in ("pass", "secret", "token", "key")):
        candidates.extend((6, start, end, kind) for start, end, kind in _assignments(text))
    if any(word in low for word in ("pass", "secret", "token", "key", "cred")):
        candidates.extend((7, start, end, kind) for start, end, kind in near_words(text))
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


def clean(text: str, policy: str) -> tuple[str, list[str]]:
    """A store's secrets policy applied to text before it is written: the text to write and the kinds of
    secret redacted from it. A store that refuses secrets raises InvalidInput, naming the kinds."""
    try:
        cleaned, findings = apply_policy(text, policy)
    except SecretRefused as exc:
        raise InvalidInput(f"{exc}; this store refuses secrets (somna.toml [secrets] policy)") from None
    if findings and policy == "redact":
        log.info("redacted %d likely secret(s): %s", len(findings), sorted({f.kind for f in findings}))
        return cleaned, [f.kind for f in findings]
    return text, []
