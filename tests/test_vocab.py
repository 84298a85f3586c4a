"""The vocabulary: frequency order, <unk>, min_count / max_size, save and load."""
from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import EOS, UNK, NgteachError, Vocabulary, WordTokenizer
from reference import tokenize_file, vocabulary


def from_words(words, **kw) -> Vocabulary:
    counts = Counter(words)
    types = list(counts)
    return Vocabulary.from_counts(types, np.array([counts[t] for t in types]), **kw)


def test_hand_worked_order():
    # counts: the 3, cat 2, a 2, <eos> 2, zebra 1
    words = ["the", "cat", "the", "a", "cat", "the", "a", "zebra", EOS, EOS]
    vocab = from_words(words)
    # count desc; ties by code point order ("<" < "a" < "c"); <unk> has count 0
    assert vocab.tokens == ["the", "<eos>", "a", "cat", "zebra", UNK]
    assert [vocab.id(t) for t in vocab.tokens] == list(range(6))
    assert vocab.id("never-seen") == vocab.unk_id == 5
    assert vocab.eos_id == 1
    assert len(vocab) == 6
    assert "cat" in vocab and "dog" not in vocab


def test_min_count_moves_rare_words_into_unk():
    words = ["x"] * 5 + ["y"] * 2 + ["z"] * 2 + ["w"] + ["v"]
    vocab = from_words(words, min_count=2)
    # w and v (1 each) -> <unk> with count 2, tying with y and z: ordered by text
    assert vocab.tokens == ["x", UNK, "y", "z"]
    vocab = from_words(words, min_count=3)
    assert vocab.tokens == [UNK, "x"]  # <unk> = 2 + 2 + 1 + 1 = 6 > 5


def test_max_size_keeps_the_most_frequent():
    words = ["x"] * 5 + ["y"] * 4 + ["b"] * 3 + ["a"] * 3 + ["q"]
    vocab = from_words(words, max_size=4)
    # keep 3 words: x, y, then the tie a/b by text -> a; <unk> = b (3) + q (1) = 4
    assert vocab.tokens == ["x", UNK, "y", "a"]
    assert len(vocab) == 4


def test_literal_unk_in_corpus_is_merged():
    words = ["<unk>", "<unk>", "a", "b", "b"]
    vocab = from_words(words, min_count=2)
    # <unk>: 2 literal + a (1) = 3
    assert vocab.tokens == [UNK, "b"]
    assert vocab.tokens.count(UNK) == 1


word_lists = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "Z", "\u00e9", "<eos>", "<unk>", "aa"]),
                      min_size=1, max_size=80)


@settings(max_examples=200, deadline=None)
@given(words=word_lists, min_count=st.integers(1, 4), max_size=st.one_of(st.none(), st.integers(1, 8)))
def test_from_counts_matches_reference(words, min_count, max_size):
    vocab = from_words(words, min_count=min_count, max_size=max_size)
    assert vocab.tokens == vocabulary(words, min_count, max_size)
    assert UNK in vocab.tokens
    assert (EOS in vocab.tokens) == (EOS in words)  # kept whatever min_count and max_size say
    if max_size is not None:
        assert len(vocab) <= max(max_size, 1 + (EOS in words))
    # the mapped stream's counts are non-increasing by id, ties ordered by text
    ids = np.array([vocab.id(w) for w in words])
    counts = np.bincount(ids, minlength=len(vocab))
    keys = [(-int(c), t) for c, t in zip(counts, vocab.tokens)]
    assert keys == sorted(keys)
    assert int(counts.sum()) == len(words)


def test_save_load_round_trip(tmp_path):
    words = ["caf\u00e9", "\u65e5\u672c", "x", "x", "<eos>", "a b".split()[0], "\U0001f600"]
    vocab = from_words(words)
    vocab.save(tmp_path)
    text = (tmp_path / "vocab.txt").read_bytes().decode("utf-8")
    assert text.split("\n")[:-1] == vocab.tokens  # line number = id
    assert text.endswith("\n")
    loaded = Vocabulary.load(tmp_path)
    assert loaded.tokens == vocab.tokens
    for i, token in enumerate(vocab.tokens):
        assert loaded.id(token) == i
    assert loaded.id("missing") == loaded.unk_id == vocab.tokens.index(UNK)
    assert loaded.eos_id == vocab.tokens.index(EOS)
    assert loaded.sha256() == vocab.sha256()
    # vocab.marisa on its own is a RecordTrie("<I") token -> (id,)
    import marisa_trie

    trie = marisa_trie.RecordTrie("<I")
    trie.load(str(tmp_path / "vocab.marisa"))
    assert {key: value[0] for key, value in trie.items()} == {t: i for i, t in enumerate(vocab.tokens)}


def test_sha256_is_that_of_saved_vocab_txt(tmp_path):
    vocab = from_words(["b", "a", "a", "\u00e9"])
    vocab.save(tmp_path)
    assert vocab.sha256() == hashlib.sha256((tmp_path / "vocab.txt").read_bytes()).hexdigest()
    other = from_words(["b", "a", "a", "\u00e9", "b", "b"])  # same words, other order
    assert other.sha256() != vocab.sha256()


def test_map_types():
    vocab = from_words(["a", "a", "b"])
    ids = vocab.map_types(["b", "zz", "a"])
    assert ids.dtype == np.uint32
    assert ids.tolist() == [vocab.id("b"), vocab.unk_id, vocab.id("a")]


def test_load_missing_vocabulary(tmp_path):
    with pytest.raises(NgteachError):
        Vocabulary.load(tmp_path)


def test_duplicate_tokens_refused():
    with pytest.raises(NgteachError):
        Vocabulary(["a", "b", "a", UNK])


# ---- the word tokenizer ---------------------------------------------------------------------

def test_word_tokenizer_on_real_text(wt2_valid):
    tokenizer, ids = WordTokenizer.train(wt2_valid)
    words = tokenize_file(wt2_valid)
    assert tokenizer.vocab.tokens == vocabulary(words)
    assert len(ids) == 217_646
    tokens = tokenizer.vocab.tokens
    assert [tokens[i] for i in ids[:5000]] == words[:5000]
    assert [tokens[i] for i in ids[-5000:]] == words[-5000:]


def test_word_tokenizer_min_count_and_max_size(write_corpus):
    path = write_corpus("a a a b b c\nd a b\n")
    words = ["a", "a", "a", "b", "b", "c", EOS, "d", "a", "b", EOS]
    tokenizer, ids = WordTokenizer.train(path, min_count=2)
    assert tokenizer.vocab.tokens == vocabulary(words, 2) == ["a", "b", "<eos>", UNK]
    decoded = [tokenizer.vocab.tokens[i] for i in ids]
    assert decoded == [w if w in ("a", "b", EOS) else UNK for w in words]
    tokenizer, ids = WordTokenizer.train(path, max_size=3)
    # <eos> (2) is kept however rare, leaving room for one word: a (4); <unk>: b + c + d = 5
    assert tokenizer.vocab.tokens == vocabulary(words, 1, 3) == [UNK, "a", EOS]
    assert tokenizer.config() == {"kind": "word", "min_count": 1, "max_size": 3}
    # another file and free text are mapped with the same vocabulary
    other = write_corpus("a z\n", "other.txt")
    assert tokenizer.encode_file(other).tolist() == [1, 0, 2]  # a, z -> <unk>, <eos>
    assert tokenizer.encode_text("b  a\tq").tolist() == [0, 1, 0]  # no <eos> for free text


@pytest.mark.parametrize("kw", [{"min_count": 100}, {"max_size": 2}, {"min_count": 100, "max_size": 5}])
def test_reserved_tokens_survive_any_min_count_and_max_size(write_corpus, kw):
    tokenizer, ids = WordTokenizer.train(write_corpus("a a b\nc\n"), **kw)
    assert sorted(tokenizer.vocab.tokens) == [EOS, UNK]
    assert [tokenizer.vocab.tokens[i] for i in ids] == [UNK, UNK, UNK, EOS, UNK, EOS]


@settings(max_examples=200, deadline=None)
@given(words=word_lists, min_count=st.integers(1, 4), max_size=st.one_of(st.none(), st.integers(2, 8)))
def test_keeping_eos_changes_nothing_where_it_survived(words, min_count, max_size):
    # the rule before <eos> was reserved: the max_size - 1 most frequent words seen
    # min_count times or more, then <unk> with the count of the rest
    counts = Counter(words)
    kept = sorted((w for w in counts if w != UNK and counts[w] >= min_count), key=lambda w: (-counts[w], w))
    kept = {w: counts[w] for w in kept[: None if max_size is None else max_size - 1]}
    if EOS in kept:
        kept[UNK] = len(words) - sum(kept.values())
        before = sorted(kept, key=lambda w: (-kept[w], w))
        assert from_words(words, min_count=min_count, max_size=max_size).tokens == before


@pytest.mark.parametrize("kw", [{"min_count": 0}, {"max_size": 1}])
def test_word_tokenizer_bad_options(write_corpus, kw):
    with pytest.raises(NgteachError):
        WordTokenizer.train(write_corpus("a b\n"), **kw)
