"""Counting: the trie of m-gram tables against a naive Counter of every m-gram."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ngram_teacher import count_orders
from reference import all_ngram_counts, table_ngrams, tokenize_file

pytestmark = pytest.mark.usefixtures("counting")  # every test, each way of counting


def check_tables(tokens: list[int], vocab_size: int, order: int) -> list:
    """Count with ngteach and check every documented property against the reference."""
    tables = list(count_orders(np.array(tokens, dtype=np.uint32), vocab_size, order))
    assert len(tables) == order
    expected = all_ngram_counts(tokens, order)
    previous_size = 1  # order 1 has a single context, id 0
    for m, table in enumerate(tables, start=1):
        for name in ("words", "counts", "offsets", "cont_words", "cont_counts"):
            assert getattr(table, name).dtype == np.uint32, name
        n = len(expected[m])
        assert len(table) == len(table.words) == len(table.counts) == n
        assert len(table.cont_words) == len(table.cont_counts) == n
        offsets = table.offsets.tolist()
        assert len(offsets) == previous_size + 1
        assert offsets[0] == 0 and offsets[-1] == n
        assert all(a <= b for a, b in zip(offsets, offsets[1:]))
        words, counts = table.words.tolist(), table.counts.tolist()
        cont = list(zip(table.cont_words.tolist(), table.cont_counts.tolist()))
        for c in range(previous_size):
            lo, hi = offsets[c], offsets[c + 1]
            group = words[lo:hi]
            assert group == sorted(set(group)), "words of a context: strictly ascending"
            assert all(x > 0 for x in counts[lo:hi])
            by_count = sorted(zip(group, counts[lo:hi]), key=lambda wc: (-wc[1], wc[0]))
            assert cont[lo:hi] == by_count
        previous_size = n
    decoded = table_ngrams(tables)
    for m in range(1, order + 1):
        assert decoded[m - 1] == dict(expected[m]), f"order {m}"
    return tables


def test_hand_worked_tables():
    # "a b a b c" with a=0 b=1 c=2
    tables = check_tables([0, 1, 0, 1, 2], 3, 3)
    one, two, three = tables
    assert one.words.tolist() == [0, 1, 2] and one.counts.tolist() == [2, 2, 1]
    assert one.offsets.tolist() == [0, 3]
    assert one.cont_words.tolist() == [0, 1, 2]
    # bigrams: (a b) x2, (b a), (b c); context a = unigram id 0, b = 1, c = 2
    assert two.words.tolist() == [1, 0, 2] and two.counts.tolist() == [2, 1, 1]
    assert two.offsets.tolist() == [0, 1, 3, 3]
    # trigrams: (a b a) ctx (a b)=0, (a b c) ctx (a b)=0, (b a b) ctx (b a)=1
    assert three.words.tolist() == [0, 2, 1] and three.counts.tolist() == [1, 1, 1]
    assert three.offsets.tolist() == [0, 2, 3, 3]


def test_continuations_sorted_by_count_then_word():
    # after x=0: y=1 once, z=2 three times, w=3 three times
    tokens = [0, 1, 0, 2, 0, 2, 0, 2, 0, 3, 0, 3, 0, 3]
    tables = check_tables(tokens, 4, 2)
    two = tables[1]
    lo, hi = two.offsets[0], two.offsets[1]
    assert two.words[lo:hi].tolist() == [1, 2, 3]
    assert two.cont_words[lo:hi].tolist() == [2, 3, 1]
    assert two.cont_counts[lo:hi].tolist() == [3, 3, 1]


def test_empty_and_short_streams():
    tables = check_tables([], 3, 3)
    assert [len(t) for t in tables] == [0, 0, 0]
    tables = check_tables([2], 3, 4)
    assert [len(t) for t in tables] == [1, 0, 0, 0]


def test_unused_vocabulary_ids():
    # vocab_size larger than the ids used: unused words simply have no entries
    check_tables([5, 5, 7, 5], 10, 3)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    vocab_size=st.integers(1, 8),
    order=st.integers(1, 5),
)
def test_random_corpora_match_naive_counter(data, vocab_size, order):
    tokens = data.draw(st.lists(st.integers(0, vocab_size - 1), max_size=300), label="tokens")
    check_tables(tokens, vocab_size, order)


def test_long_repetitive_stream():
    # few words, many repeats: long groups (beyond the insertion-sort cutoff) and big counts
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 40, 5000).tolist()
    tables = check_tables(tokens, 40, 3)
    assert len(tables[0]) == 40


def test_real_text_slice(wt2_valid):
    words = tokenize_file(wt2_valid)[:30_000]
    ids_of: dict[str, int] = {}
    for w in sorted(set(words)):
        ids_of[w] = len(ids_of)
    tokens = [ids_of[w] for w in words]
    tables = check_tables(tokens, len(ids_of), 5)
    # the count of every order adds up to the number of positions where it ends
    for m, table in enumerate(tables, start=1):
        assert int(table.counts.sum(dtype=np.int64)) == len(tokens) - m + 1


def test_count_orders_is_lazy_and_lowest_first():
    gen = count_orders(np.array([0, 1, 0], dtype=np.uint32), 2, 3)
    first = next(gen)
    assert first.words.tolist() == [0, 1]
    assert len(list(gen)) == 2


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.int32])
def test_other_integer_dtypes_are_accepted(dtype):
    tokens = np.array([1, 0, 1, 1], dtype=dtype)
    tables = list(count_orders(tokens, 2, 2))
    assert table_ngrams(tables)[1] == {(1, 0): 1, (0, 1): 1, (1, 1): 1}
