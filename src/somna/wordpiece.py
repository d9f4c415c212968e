"""The BERT WordPiece tokenizer of all-MiniLM-L6-v2 in plain Python: no `tokenizers`, no torch.

It gives the ids that the model's own `tokenizer.json` gives (BertNormalizer with lowercase and accent
stripping, BertPreTokenizer, WordPiece with `##` continuations, `[CLS] … [SEP]`, truncation to the
model's 256 tokens); tests/test_wordpiece.py checks that against the `tokenizers` package where the
development install has it. The vocabulary (`data/minilm-vocab.txt`, 30,522 lines, from
sentence-transformers/all-MiniLM-L6-v2, Apache-2.0) ships inside somna.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

VOCAB = Path(__file__).parent / "data" / "minilm-vocab.txt"
MAX_TOKENS = 256  # sentence_bert_config.json of all-MiniLM-L6-v2: [CLS] + 254 pieces + [SEP]
MAX_WORD_CHARS = 100  # a longer word is one [UNK], as in the model's tokenizer
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # matched in the raw text, before normalising
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIAL) + ")")
_ASCII_PUNCT = frozenset(string.punctuation)
_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


@dataclass(frozen=True)
class Encoding:
    """What `tokenizers.Encoding` offers that the ONNX encoder reads."""

    ids: list[int]

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.ids)

    @property
    def type_ids(self) -> list[int]:
        return [0] * len(self.ids)


def _is_space(c: str) -> bool:
    # Unicode White_Space; str.isspace() also counts U+001C..U+001F, which BERT drops as control characters
    return c in "\t\n\r" or (c.isspace() and not "\x1c" <= c <= "\x1f")


def _is_control(c: str) -> bool:
    # Cc, Cf, Co, Cs; an unassigned code point (Cn) stays, as in the model's tokenizer (it becomes [UNK]).
    # Characters that Unicode assigned or re-categorised after the tokenizer's own tables (a few hundred
    # rare ones: new punctuation, marks and format characters) may split differently: tests/test_wordpiece.py
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs")


def _is_punct(c: str) -> bool:
    return c in _ASCII_PUNCT or unicodedata.category(c)[0] == "P"


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in _CJK)


# ASCII text (most of it): control characters go, tab/newline/return become spaces; nothing else changes
_ASCII_CLEAN = {i: None for i in (*range(32), 127)} | {9: 32, 10: 32, 13: 32}
_ASCII_WORD = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")


def normalize(text: str) -> str:
    """BertNormalizer: drop control characters, whitespace to ' ', space around CJK, strip accents, lower."""
    if text.isascii():
        return text.translate(_ASCII_CLEAN).lower()
    out = []
    for c in text:
        if c in "\x00\ufffd" or _is_control(c):
            continue
        if _is_space(c):
            out.append(" ")
        elif _is_cjk(c):
            out.append(f" {c} ")
        else:
            out.append(c)
    decomposed = unicodedata.normalize("NFD", "".join(out))
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()


def pre_split(text: str) -> list[str]:
    """BertPreTokenizer: split on whitespace, and every punctuation character is a word of its own."""
    if text.isascii():  # normalised ASCII: lower-case letters, digits, punctuation and spaces
        return _ASCII_WORD.findall(text)
    words: list[str] = []
    for chunk in text.split(" "):
        start = 0
        for i, c in enumerate(chunk):
            if _is_punct(c):
                if i > start:
                    words.append(chunk[start:i])
                words.append(c)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return [w for w in words if w and not w.isspace()]


def _chunks(text: str, size: int = 4096) -> Iterator[str]:
    """The text in pieces cut at a word boundary (after a space or newline, else after a punctuation or CJK
    character), so that a huge text is normalised only as far as its first 254 tokens reach. Only a run of
    over 4,096 characters with no boundary at all is cut inside (several [UNK] where the model's own
    tokenizer gives one)."""
    pos = 0
    while pos < len(text):
        end = pos + size
        if end < len(text):
            cut = max(text.rfind(" ", pos, end), text.rfind("\n", pos, end))
            if cut < 0:
                cut = next(
                    (k for k in range(end - 1, pos, -1) if _is_punct(text[k]) or _is_cjk(text[k])), end - 1
                )
            end = cut + 1
        yield text[pos:end]
        pos = end


class WordPiece:
    def __init__(self, vocab: Path = VOCAB, max_tokens: int = MAX_TOKENS) -> None:
        tokens = vocab.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.max_tokens = max_tokens
        self.unk, self.cls, self.sep = (self.vocab[t] for t in ("[UNK]", "[CLS]", "[SEP]"))
        self.pieces = lru_cache(maxsize=65536)(self._pieces)

    def _pieces(self, word: str) -> tuple[int, ...]:
        if len(word) > MAX_WORD_CHARS:
            return (self.unk,)
        out: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return (self.unk,)
            out.append(found)
            start = end
        return tuple(out)

    def encode(self, text: str) -> Encoding:
        room = self.max_tokens - 2
        ids: list[int] = []
        for part in _SPECIAL_RE.split(text):
            if len(ids) >= room:
                break
            if part in self.vocab and part in SPECIAL:
                ids.append(self.vocab[part])
                continue
            for chunk in _chunks(part):
                for word in pre_split(normalize(chunk)):
                    ids.extend(self.pieces(word))
                    if len(ids) >= room:
                        break
                if len(ids) >= room:
                    break
        return Encoding([self.cls, *ids[:room], self.sep])

    def encode_batch(self, texts: list[str]) -> list[Encoding]:
        return [self.encode(t) for t in texts]
