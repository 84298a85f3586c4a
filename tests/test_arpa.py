"""ARPA files (read_arpa, write_arpa) and the ARPA ranking teacher.

The teacher is checked against KenLM (``kenlm.Model`` scoring every word of the
vocabulary after every context: the brute force the teacher avoids) on random backoff
models, and against a small model ranked by hand.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import warnings

import kenlm
import numpy as np
import pytest

import ngram_teacher.arpa_rank
from corpora import NgteachError
from corpora.vocab import Vocabulary
from conftest import head_lines
from ngram_teacher import NgramModel, RankFile, build_model, write_ranks
from ngram_teacher.arpa import ArpaOrder, ArpaTables, read_arpa, write_arpa
from ngram_teacher.arpa_rank import ArpaTeacher, arpa_continuations, load_teacher
from ngram_teacher.kneser_ney import estimate_kneser_ney

LN10 = math.log(10)

# What KenLM's lmplz wrote (lmplz -o 3 --discount_fallback) for the text
# "a b c\na b d\nb c a\nc a b d\n": tabs, backoff 0 on the n-grams that are no context,
# <s> with log10 probability 0.
LMPLZ_ARPA = """\\data\\
ngram 1=7
ngram 2=10
ngram 3=10

\\1-grams:
-1.0791812\t<unk>\t0
0\t<s>\t-0.30103
-0.6320232\t</s>\t0
-0.7367586\ta\t-0.30103
-0.7367586\tb\t-0.30103
-0.7367586\tc\t-0.30103
-0.8750613\td\t-0.30103

\\2-grams:
-0.5477023\ta </s>\t0
-0.5477023\tc </s>\t0
-0.20994952\td </s>\t0
-0.4663974\t<s> a\t-0.30103
-0.37161106\tc a\t-0.30103
-0.6642079\t<s> b\t-0.30103
-0.37161106\ta b\t-0.30103
-0.6642079\t<s> c\t-0.30103
-0.37161106\tb c\t-0.30103
-0.6320232\tb d\t-0.30103

\\3-grams:
-0.40708336\tc a </s>
-0.40708336\tb c </s>
-0.092409514\tb d </s>
-0.14721514\t<s> c a
-0.33488825\tb c a
-0.14721514\t<s> a b
-0.33488825\tc a b
-0.14721514\t<s> b c
-0.42116985\ta b c
-0.34678748\ta b d

\\end\\
"""

# A model small enough to rank by hand (the expected rows below).
HAND_ARPA = """\\data\\
ngram 1=6
ngram 2=4
ngram 3=2

\\1-grams:
-1.0\t<s>\t-0.5
-0.6\t</s>
-1.2\t<unk>
-0.5\ta\t-0.3
-0.7\tb\t-0.2
-0.9\tc\t-0.1

\\2-grams:
-0.2\t<s> a\t-0.25
-0.4\ta b\t-0.15
-0.3\ta c
-0.5\tb </s>

\\3-grams:
-0.1\t<s> a b
-0.05\ta b </s>

\\end\\
"""


def write(tmp_path, text: str | bytes, name: str = "model.arpa"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


# ---- reading and writing ----------------------------------------------------------------------

def test_reads_an_lmplz_file(tmp_path):
    tables = read_arpa(write(tmp_path, LMPLZ_ARPA))
    assert tables.words == ["<unk>", "<s>", "</s>", "a", "b", "c", "d"]
    assert [len(o.ngrams) for o in tables.orders] == [7, 10, 10]
    unigrams, bigrams, trigrams = tables.orders
    assert unigrams.ngrams[:, 0].tolist() == list(range(7))
    assert unigrams.log10_prob[1] == 0 and unigrams.log10_backoff[1] == np.float32(-0.30103)
    assert [tables.words[w] for w in bigrams.ngrams[9]] == ["b", "d"]
    assert bigrams.log10_prob[9] == np.float32(-0.6320232) and bigrams.log10_backoff[0] == 0
    assert [tables.words[w] for w in trigrams.ngrams[2]] == ["b", "d", "</s>"]
    assert trigrams.log10_prob[2] == np.float32(-0.092409514) and trigrams.log10_backoff is None
    assert trigrams.ngrams.dtype == np.int32 and trigrams.log10_prob.dtype == np.float32


def test_reads_spaces_crlf_absent_backoffs_and_leading_blank_lines(tmp_path):
    text = ("\r\n\r\n\\data\\\r\nngram  1 = 3\r\nngram 2=2\r\n\r\n\\1-grams:\r\n-1 <s> -0.5\r\n-0.25\t</s>\r\n"
            "-0.5   a   -1e-3\r\n\r\n\\2-grams:\r\n  -0.125 <s>  a\r\n-0.75\ta </s>\r\n\r\n\\end\\")
    tables = read_arpa(write(tmp_path, text))
    assert tables.words == ["<s>", "</s>", "a"]
    np.testing.assert_array_equal(tables.orders[0].log10_prob, np.float32([-1, -0.25, -0.5]))
    np.testing.assert_array_equal(tables.orders[0].log10_backoff, np.float32([-0.5, 0, -0.001]))
    assert tables.orders[1].ngrams.tolist() == [[0, 2], [2, 1]]
    np.testing.assert_array_equal(tables.orders[1].log10_prob, np.float32([-0.125, -0.75]))


def random_tables(rng, n_words: int, order: int, n_sentences: int, unk: bool = True) -> ArpaTables:
    """A random backoff model: the n-grams of random sentences (<s> ... </s>), so closed
    under prefixes and suffixes as ARPA requires, with random log10 probabilities and
    backoffs (on every n-gram below the top order, context or not)."""
    words = ["<s>", "</s>"] + (["<unk>"] if unk else []) + [f"w{i}" for i in range(n_words)]
    grams: list[set] = [{(w,) for w in range(len(words))}] + [set() for _ in range(order - 1)]
    for _ in range(n_sentences):
        body = rng.integers(len(words) - n_words, len(words), rng.integers(1, 6)).tolist()
        sentence = [0] + body + [1]
        for m in range(1, order + 1):
            grams[m - 1].update(tuple(sentence[i:i + m]) for i in range(len(sentence) - m + 1))
    orders = []
    for m, found in enumerate(grams, start=1):
        rows = np.array(sorted(found), np.int32).reshape(-1, m)
        rng.shuffle(rows)
        backoff = None if m == order else (rng.random(len(rows)) * -1.5 + 0.3).astype(np.float32)
        orders.append(ArpaOrder(rows, (rng.random(len(rows)) * -3).astype(np.float32), backoff))
    return ArpaTables(words, orders)


def test_write_then_read_gives_the_tables_back(tmp_path):
    tables = random_tables(np.random.default_rng(0), 30, 4, 60)
    tables.words[5:8] = ["naïve", "«quoted»", "x\xa0y"]  # UTF-8, and a no-break space inside a word
    unigrams = tables.orders[0]
    unigrams.log10_prob[:6] = [0, -0.0, -99, -1234.5678901, -1e-9, -np.inf]
    unigrams.log10_backoff[:4] = [0.5, -0.0, 12.25, -3e-8]
    path = tmp_path / "out.arpa"
    write_arpa(tables, path)
    assert os.listdir(tmp_path) == ["out.arpa"]
    back = read_arpa(path)
    assert sorted(back.words) == sorted(tables.words)
    for written, read in zip(tables.orders, back.orders):
        assert spelled(read, back.words) == spelled(written, tables.words)  # same n-grams, in the same order
        # written with 7 decimals: within 5e-8, plus float32 rounding of the value read
        np.testing.assert_allclose(read.log10_prob, written.log10_prob, rtol=1e-7, atol=5e-8)
        if written.log10_backoff is None:
            assert read.log10_backoff is None
        else:
            np.testing.assert_allclose(read.log10_backoff, written.log10_backoff, rtol=1e-7, atol=5e-8)
    assert kenlm.Model(str(path)).order == 4  # and KenLM reads it


@pytest.mark.parametrize("value, text", [
    (0.0, "0"), (-0.0, "0"), (-1e-8, "0"), (-5e-8, "-0.0000001"), (1.5, "1.5"), (-99.0, "-99"), (-1.0, "-1"),
    (-0.25, "-0.25"), (-2.5e-7, "-0.0000002"), (1234.5, "1234.5"), (-np.inf, "-inf"),
    (99999997952.0, "99999997952"),  # the largest float32 below 1e11, in fixed point
])
def test_values_are_written_rounded_to_seven_places_without_trailing_zeros(tmp_path, value, text):
    # hand-worked: float32(value) rounded half to even at 1e-7 (float32(-5e-8) is just below -5e-8)
    tables = ArpaTables(["<unk>", "<s>", "</s>"], [ArpaOrder(np.array([[0]], np.int32), np.float32([value]), None)])
    write_arpa(tables, tmp_path / "one.arpa")
    assert (tmp_path / "one.arpa").read_text().splitlines()[4] == f"{text}\t<unk>"


@pytest.mark.parametrize("value", [np.nan, np.inf, 2e11, -2e12])
def test_a_value_that_cannot_be_written_is_refused_and_nothing_is_left(tmp_path, value):
    tables = ArpaTables(["<unk>", "<s>", "</s>"], [ArpaOrder(np.array([[0], [1]], np.int32), np.float32([-1, value]),
                                                            None)])
    with pytest.raises(ValueError, match="cannot be written"):
        write_arpa(tables, tmp_path / "bad.arpa")
    assert os.listdir(tmp_path) == []


def spelled(order: ArpaOrder, words: list[str]) -> list[tuple[str, ...]]:
    return [tuple(words[w] for w in gram) for gram in order.ngrams]


def test_written_text(tmp_path):
    tables = ArpaTables(["<s>", "</s>", "a"], [
        ArpaOrder(np.array([[0], [1], [2]], np.int32), np.float32([-99, -0.5, -0.25]), np.float32([-0.125, 0, 1.5])),
        ArpaOrder(np.array([[0, 2], [2, 1]], np.int32), np.float32([-0.0000001, -12]), None)])
    write_arpa(tables, tmp_path / "m.arpa")
    assert (tmp_path / "m.arpa").read_text() == (
        "\\data\\\nngram 1=3\nngram 2=2\n\n\\1-grams:\n-99\t<s>\t-0.125\n-0.5\t</s>\t0\n-0.25\ta\t1.5\n"
        "\n\\2-grams:\n-0.0000001\t<s> a\n-12\ta </s>\n\n\\end\\\n")


def test_write_refuses_a_word_with_whitespace_and_leaves_nothing(tmp_path):
    tables = ArpaTables(["<s>", "a b"], [ArpaOrder(np.array([[0], [1]], np.int32), np.float32([0, -1]), None)])
    with pytest.raises(ValueError, match="'a b'"):
        write_arpa(tables, tmp_path / "m.arpa")
    assert os.listdir(tmp_path) == []


GOOD = "\\data\\\nngram 1=3\nngram 2=2\n\n\\1-grams:\n-1\t<s>\t-0.5\n-0.5\t</s>\n-0.5\ta\t-0.25\n\n" \
       "\\2-grams:\n-0.1\t<s> a\n-0.2\ta </s>\n\n\\end\\\n"


@pytest.mark.parametrize("text, line, reason", [
    ("", 1, "the file is empty"),
    ("\n  \n", 2, "only blank lines"),
    (GOOD.replace("\\data\\", "data"), 1, "expected \\data\\, found 'data'"),
    (GOOD.replace("ngram 1=3", "ngram 1:3"), 2, "expected 'ngram N=COUNT'"),
    (GOOD.replace("ngram 1=3\nngram 2=2", "ngram 2=2\nngram 1=3"), 2, "expected the count of order 1, found order 2"),
    (GOOD.replace("ngram 1=3", "ngram 1=4"), 9, "the \\1-grams: section ends after 3 n-grams, but the header counts 4"),
    (GOOD.replace("ngram 1=3", "ngram 1=2"), 8, "more n-grams in the \\1-grams: section than the 2"),
    (GOOD.replace("ngram 2=2", "ngram 2=3"), 13, "the \\2-grams: section ends after 2 n-grams"),
    (GOOD.replace("\\2-grams:", "\\3-grams:"), 10, "expected \\2-grams: (the header counts 2 2-grams)"),
    (GOOD.split("\n\\2-grams:")[0] + "\n", 9, "the file ends before the \\2-grams: section"),
    (GOOD.replace("-0.5\t</s>", "-O.5\t</s>"), 7, "log10 probability '-O.5' is not a number"),
    (GOOD.replace("-0.25", "--0.25"), 8, "log10 backoff '--0.25' is not a number"),
    (GOOD.replace("-0.2\ta </s>", "nan\ta </s>"), 12, "log10 probability nan is not a log10 value"),
    (GOOD.replace("-0.25", "inf"), 8, "log10 backoff inf is not a log10 value"),
    (GOOD.replace("-0.25", "1e39"), 8, "log10 backoff 1e+39 is too large (the limit is 1e+38)"),
    (GOOD.replace("-0.1\t<s> a", "0.1\t<s> a"), 11, "positive log10 probability"),
    (GOOD.replace("-0.1\t<s> a", "-0.1\t<s>"), 11, "found 2 fields"),  # a 1-gram among the 2-grams
    (GOOD.replace("-0.2\ta </s>", "-0.2\ta </s> a"), 12, "found 4 fields"),  # a 3-gram on the top order
    (GOOD.replace("-0.5\ta\t-0.25", "-0.5\ta\t-0.25\textra"), 8, "found 4 fields"),
    (GOOD.replace("-0.1\t<s> a", "-0.1\t<s> b"), 11, "the word 'b' of this 2-gram is not one of the 1-grams"),
    (GOOD.replace("-0.5\ta\t-0.25", "-0.5\t</s>\t-0.25"), 8, "the 1-gram '</s>' is listed twice"),
    (GOOD.replace("\n\\end\\\n", "\n"), 13, "missing \\end\\"),  # the last line
    (GOOD.replace("\\end\\\n", "\\fin\\\n"), 14, "expected \\end\\ after the 2-grams, found '\\\\fin\\\\'"),
    (GOOD + "\n-1\tb\n", 16, "text after \\end\\"),
])
def test_malformed_files_name_the_line_and_the_problem(tmp_path, text, line, reason):
    path = write(tmp_path, text)
    with pytest.raises(NgteachError) as caught:
        read_arpa(path)
    assert str(caught.value).startswith(f"{path}: line {line}: ")
    assert reason in str(caught.value)


def test_non_utf8_names_its_line(tmp_path):
    path = write(tmp_path, GOOD.encode().replace(b"-0.5\ta", b"-0.5\t\xff\xfea"))
    with pytest.raises(NgteachError, match=rf"^{path}: line 8: not UTF-8"):
        read_arpa(path)


def test_values_beyond_float32_read_as_minus_inf_without_warnings(tmp_path):
    path = write(tmp_path, GOOD.replace("-0.5\t</s>", "-1e300\t</s>").replace("-0.25", "-3e38"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tables = read_arpa(path)
        ids, orders, scores = rank(ArpaTeacher(tables, Vocabulary(["<eos>", "<unk>", "a"]), 3), [2], 3,
                                   gt_first=False)
    assert tables.orders[0].log10_prob[1] == -np.inf and tables.orders[0].log10_backoff[2] == -np.inf
    assert ids[0].tolist() == [2, 1, 0] and scores[0][2] == -np.inf  # </s> has probability 0 after <s>


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(NgteachError, match="no such file"):
        read_arpa(tmp_path / "nothing.arpa")
    with pytest.raises(NgteachError, match="is a directory"):
        read_arpa(tmp_path)


# ---- the teacher against KenLM -------------------------------------------------------------------

def kenlm_ranking(lm: kenlm.Model, tokens: list[str], context: list[str], bos: bool, min_order: int = 1):
    """Every word of the vocabulary scored by KenLM after ``context`` (the model's <eos>
    is </s>): (natural-log float32 probability, id, n-gram length), best first, ties by id,
    those found below ``min_order`` left out."""
    scored = []
    for i, token in enumerate(tokens):
        word = "</s>" if token == "<eos>" else token
        log10, length, _ = list(lm.full_scores(" ".join(context + [word]), bos=bos, eos=False))[-1]
        if length >= min_order:
            scored.append((np.float32(log10 * LN10), i, length))
    return sorted(scored, key=lambda entry: (-entry[0], entry[1]))


def reference_rows(lm, tokens: list[str], stream: list[int], k: int, gt_first: bool, min_order: int = 1):
    """(ids, orders, scores) of every position by brute force: the context is the stream
    since the last <eos>, after <s>."""
    rows, sentence = [], []
    for token in stream:
        ranked = kenlm_ranking(lm, tokens, sentence, True, min_order)
        if gt_first:
            truth = next(e for e in kenlm_ranking(lm, tokens, sentence, True) if e[1] == token)
            ranked = [truth] + [e for e in ranked if e[1] != token]
        rows.append(ranked[:k])
        sentence = [] if tokens[token] == "<eos>" else sentence + [tokens[token]]
    return rows


def assert_rows(ids, orders, scores, expected, k, pad_id):
    for row, want in enumerate(expected):
        n = len(want)
        assert ids[row, :n].tolist() == [e[1] for e in want], f"position {row}"
        assert orders[row, :n].tolist() == [e[2] for e in want], f"position {row}"
        np.testing.assert_allclose(scores[row, :n], [e[0] for e in want], rtol=1e-5, atol=1e-5)
        assert ids[row, n:].tolist() == [pad_id] * (k - n) and orders[row, n:].tolist() == [0] * (k - n)
        assert np.all(scores[row, n:] == -np.inf)


def rank(teacher: ArpaTeacher, stream, k: int, **options):
    n = len(stream)
    ids, orders, scores = np.full((n, k), 7, np.uint32), np.full((n, k), 9, np.uint8), np.zeros((n, k), np.float32)
    teacher.rank_into(np.array(stream, np.uint32), ids, orders, scores, pad_id=99_999, **options)
    return ids, orders, scores


CASES = [  # (seed, order, ARPA words, k, gt_first, vocabulary words missing from the ARPA file, min_order)
    (0, 2, 6, 3, False, 0, 1),
    (1, 3, 6, 5, True, 0, 1),
    (2, 3, 12, 2, False, 0, 1),
    (3, 4, 12, 8, True, 3, 1),  # unknown words, tied at <unk>'s probability
    (4, 4, 25, 30, True, 2, 1),  # more entries than words: padding
    (5, 3, 10, 6, False, 0, 2),  # no unigram fill-ins
    (6, 4, 10, 6, True, 1, 3),
]


@pytest.mark.parametrize("seed, order, n_words, k, gt_first, n_unknown, min_order", CASES)
def test_ranks_equal_kenlm_scoring_every_word(tmp_path, seed, order, n_words, k, gt_first, n_unknown, min_order):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng, n_words, order, 3 * n_words)
    write_arpa(tables, tmp_path / "m.arpa")
    lm = kenlm.Model(str(tmp_path / "m.arpa"))
    # the vocabulary: <eos>, <unk>, all but two ARPA words (those two are not candidates), unknown words
    tokens = ["<eos>", "<unk>"] + [w for w in tables.words[5:]] + [f"new{i}" for i in range(n_unknown)]
    teacher = ArpaTeacher(read_arpa(tmp_path / "m.arpa"), Vocabulary(tokens), k)
    stream = rng.integers(0, len(tokens), 40).tolist()
    got = rank(teacher, stream, k, gt_first=gt_first, min_order=min_order)
    assert_rows(*got, reference_rows(lm, tokens, stream, k, gt_first, min_order), k, 99_999)


@pytest.mark.parametrize("seed, order, n_words, n_unknown", [(0, 2, 6, 0), (3, 4, 12, 3), (6, 3, 25, 1)])
def test_the_whole_distribution_and_word_probabilities_are_kenlms(tmp_path, seed, order, n_words, n_unknown):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng, n_words, order, 3 * n_words)
    write_arpa(tables, tmp_path / "m.arpa")
    lm = kenlm.Model(str(tmp_path / "m.arpa"))
    # two ARPA words outside the vocabulary (their mass is dropped), unknown words at <unk>'s probability
    tokens = ["<eos>", "<unk>"] + list(tables.words[5:]) + [f"new{i}" for i in range(n_unknown)]
    teacher = ArpaTeacher(read_arpa(tmp_path / "m.arpa"), Vocabulary(tokens), 4)
    stream = rng.integers(0, len(tokens), 30).tolist()
    positions = np.array([3, 0, 17, 3, 29, 28])  # any order, repeats allowed
    got = teacher.log_distribution(np.array(stream, np.uint32), positions)
    words = rng.integers(0, len(tokens), (len(positions), 5))
    some = teacher.word_logprobs(np.array(stream, np.uint32), positions, words)
    sentence, scores = [], []
    for token in stream:
        scored = sorted(kenlm_ranking(lm, tokens, sentence, True), key=lambda entry: entry[1])
        scores.append(np.array([entry[0] for entry in scored], np.float64))
        sentence = [] if tokens[token] == "<eos>" else sentence + [tokens[token]]
    scores = np.array(scores)[positions]
    np.testing.assert_allclose(got, scores - np.logaddexp.reduce(scores, axis=1, keepdims=True), atol=2e-5)
    # and a few words' own probabilities, not renormalised
    np.testing.assert_allclose(some, np.take_along_axis(scores, words, axis=1), atol=2e-5)


def test_blocks_and_chunks_join_up(tmp_path, monkeypatch):
    """Blocks of 3 positions (contexts reach across them) and levels read one candidate
    at a time, then 2, 4, ..."""
    rng = np.random.default_rng(7)
    tables = random_tables(rng, 8, 4, 30)
    write_arpa(tables, tmp_path / "m.arpa")
    tokens = ["<eos>", "<unk>"] + tables.words[3:]
    teacher = ArpaTeacher(read_arpa(tmp_path / "m.arpa"), Vocabulary(tokens), 4)
    stream = rng.integers(0, len(tokens), 50).tolist()
    monkeypatch.setattr(ngram_teacher.arpa_rank, "BLOCK_ROWS", 3)
    monkeypatch.setattr(ngram_teacher.arpa_rank, "FIRST_WIDTH", 1)
    got = rank(teacher, stream, 4)
    assert_rows(*got, reference_rows(kenlm.Model(str(tmp_path / "m.arpa")), tokens, stream, 4, True), 4, 99_999)


class _Model:
    """Enough of an NgramModel for load_teacher: a vocabulary."""

    def __init__(self, tokens: list[str]):
        self.vocab = Vocabulary(tokens)


def test_an_lmplz_model_ranks_like_kenlm(tmp_path):
    path = write(tmp_path, LMPLZ_ARPA)
    tokens = ["<eos>", "<unk>", "d", "c", "b", "a", "e"]
    teacher = load_teacher(path, _Model(tokens), 5)
    stream = [5, 4, 3, 0, 4, 3, 5, 0, 6, 2, 0]
    got = rank(teacher, stream, 5)
    assert_rows(*got, reference_rows(kenlm.Model(str(path)), tokens, stream, 5, True), 5, 99_999)


@pytest.mark.parametrize("bos", [True, False])
def test_continuations_equal_kenlm(tmp_path, bos):
    rng = np.random.default_rng(11)
    tables = random_tables(rng, 9, 3, 30)
    write_arpa(tables, tmp_path / "m.arpa")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(tables.words[3:]) + "\nw1 w2\n", encoding="utf-8")
    model = NgramModel(build_model(corpus, tmp_path / "model", order=2))
    teacher = load_teacher(tmp_path / "m.arpa", model, 6)
    lm = kenlm.Model(str(tmp_path / "m.arpa"))
    for context in ["", "w3", "w0 w4 w4", "w2 <eos> w5"]:
        words = model.vocab.tokens
        ids = [model.vocab.id(w) for w in context.split()]
        since_eos = ids[max([i + 1 for i, t in enumerate(ids) if t == model.vocab.eos_id], default=0):]
        reset = len(since_eos) < len(ids)
        expected = kenlm_ranking(lm, words, [words[i] for i in since_eos], bos or reset)[:6]
        got = arpa_continuations(model, teacher, context, 6, bos=bos)
        assert [(c.id, c.order) for c in got] == [(e[1], e[2]) for e in expected], context
        assert [c.word for c in got] == [words[e[1]] for e in expected]
        np.testing.assert_allclose([c.logprob for c in got], [e[0] for e in expected], rtol=1e-5, atol=1e-5)


# ---- the teacher by hand ---------------------------------------------------------------------------

# HAND_ARPA ranking the stream "a b <eos> c d <eos>" by hand, as {word: (order, log10 p)}. The word
# d is not in the model: it gets <unk>'s probability. Rows are ordered by probability, then id.
HAND_WORDS = ["a", "b", "<eos>", "c", "d", "<eos>"]
AFTER_BOS = {"a": (2, -0.2), "<eos>": (1, -1.1), "b": (1, -1.2), "c": (1, -1.4), "<unk>": (1, -1.7), "d": (1, -1.7)}
HAND_ROWS = [
    AFTER_BOS,  # <s> a is a bigram; the unigrams times backoff(<s>)
    # after <s> a: b from <s> a b; then a c times backoff(<s> a) (a b is supplied above);
    # then the unigrams times backoff(<s> a) backoff(a)
    {"b": (3, -0.1), "c": (2, -0.55), "a": (1, -1.05), "<eos>": (1, -1.15), "<unk>": (1, -1.75), "d": (1, -1.75)},
    # after a b: </s> from a b </s> (b </s> is skipped); the unigrams times backoff(a b) backoff(b)
    {"<eos>": (3, -0.05), "a": (1, -0.85), "b": (1, -1.05), "c": (1, -1.25), "<unk>": (1, -1.55), "d": (1, -1.55)},
    AFTER_BOS,  # after <eos>: <s> again
    # after <s> c: no such bigram, and c lists nothing: the unigrams times backoff(c)
    {"a": (1, -0.6), "<eos>": (1, -0.7), "b": (1, -0.8), "c": (1, -1.0), "<unk>": (1, -1.3), "d": (1, -1.3)},
    # after c d, that is c <unk>: no such bigram, <unk> has backoff 1: the unigrams
    {"a": (1, -0.5), "<eos>": (1, -0.6), "b": (1, -0.7), "c": (1, -0.9), "<unk>": (1, -1.2), "d": (1, -1.2)},
]


def hand_expected(tokens: list[str], gt_first: bool = False):
    """HAND_ROWS as (natural-log probability, id, order) entries in ranking order."""
    rows = []
    for truth, row in zip(HAND_WORDS, HAND_ROWS):
        entries = sorted(((np.float32(p * LN10), tokens.index(w), o) for w, (o, p) in row.items()),
                         key=lambda e: (-e[0], e[1]))
        if gt_first:
            entries = ([e for e in entries if e[1] == tokens.index(truth)]
                       + [e for e in entries if e[1] != tokens.index(truth)])
        rows.append(entries)
    return rows


@pytest.mark.parametrize("gt_first", [False, True])
def test_hand_worked_ranking(tmp_path, gt_first):
    tokens = ["<eos>", "<unk>", "a", "b", "c", "d"]
    teacher = ArpaTeacher(read_arpa(write(tmp_path, HAND_ARPA)), Vocabulary(tokens), 6)
    got = rank(teacher, [tokens.index(w) for w in HAND_WORDS], 6, gt_first=gt_first)
    assert_rows(*got, hand_expected(tokens, gt_first), 6, 99_999)
    assert got[0][4].tolist()[-2:] == ([tokens.index("<unk>"), tokens.index("d")] if not gt_first else
                                       [tokens.index("c"), tokens.index("<unk>")])  # the tie, by id


def test_ranks_file_of_an_arpa_teacher(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b\nc d\n", encoding="utf-8")
    model = NgramModel(build_model(corpus, tmp_path / "model", order=2))
    tokens = model.vocab.tokens
    assert tokens == ["<eos>", "a", "b", "c", "d", "<unk>"]  # by count, then text: here d comes before <unk>
    assert [tokens[t] for t in model.tokens()] == HAND_WORDS
    path = write(tmp_path, HAND_ARPA, "hand.arpa")
    teacher = load_teacher(path, model, 5)
    write_ranks(teacher, model.tokens(), tmp_path / "ranks.bin", 5, with_scores=True, corpus="corpus.txt")
    ranks = RankFile(tmp_path / "ranks.bin")
    header = ranks.header
    assert header["teacher"] == {"kind": "arpa", "arpa": "hand.arpa",
                                 "arpa_sha256": hashlib.sha256(HAND_ARPA.encode()).hexdigest(),
                                 "order": 3, "min_order": 1, "ties": "word id", "partition": "strict"}
    assert header["scores"] == {"kind": "logprob", "dtype": "<f4"} and ranks.scores.dtype == np.float32
    assert header["k"] == 5 and header["n_positions"] == 6 and header["gt_first"] is True
    assert header["corpus"] == "corpus.txt" and header["id_dtype"] == "<u2" and header["pad_id"] == 65535
    ranks.check_matches(model.meta["vocab_sha256"], model.meta["tokens_sha256"])
    expected = [row[:5] for row in hand_expected(tokens, gt_first=True)]
    assert_rows(ranks.ids, ranks.orders, ranks.scores, expected, 5, 65535)


def test_ranks_file_to_a_stream_equals_the_file(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b\nc d a\n", encoding="utf-8")
    model = NgramModel(build_model(corpus, tmp_path / "model", order=2))
    teacher = load_teacher(write(tmp_path, HAND_ARPA), model, 3)
    buffer = io.BytesIO()
    write_ranks(teacher, model.tokens(), buffer, 3, with_scores=False)
    write_ranks(teacher, model.tokens(), tmp_path / "r.bin", 3, with_scores=False)
    assert buffer.getvalue() == (tmp_path / "r.bin").read_bytes()
    assert RankFile(tmp_path / "r.bin").header["scores"] is None


# ---- models the teacher refuses --------------------------------------------------------------------

def arpa_text(*orders: list[str]) -> str:
    """An ARPA file of these n-grams (as text; log10 probability -0.5 unless a line gives its own)."""
    counts = "".join(f"ngram {m}={len(grams)}\n" for m, grams in enumerate(orders, start=1))
    sections = "".join(f"\n\\{m}-grams:\n" + "".join(g + "\n" if "\t" in g else f"-0.5\t{g}\n" for g in grams)
                       for m, grams in enumerate(orders, start=1))
    return f"\\data\\\n{counts}{sections}\n\\end\\\n"


UNIGRAMS = ["<s>", "</s>", "<unk>", "a", "b"]


@pytest.mark.parametrize("bigrams, trigrams, message", [
    (["<s> a", "a b"], ["<s> a b", "<s> a a"], "the 3-gram '<s> a a' has no suffix 'a a' among the 2-grams"),
    (["<s> a", "a b", "b </s>"], ["a b </s>", "b a b"], "the 3-gram 'b a b' has no context 'b a' among the 2-grams"),
    (["<s> a", "a b", "<s> a"], [], "the 2-gram '<s> a' is listed twice"),
])
def test_teacher_refuses_models_that_are_not_closed(tmp_path, bigrams, trigrams, message):
    tables = read_arpa(write(tmp_path, arpa_text(UNIGRAMS, bigrams, trigrams)))
    with pytest.raises(NgteachError, match=message):
        ArpaTeacher(tables, Vocabulary(["<eos>", "<unk>", "a", "b"]), 3)


def test_without_unk_the_model_gets_one_at_minus_100(tmp_path):
    path = write(tmp_path, arpa_text(["<s>", "</s>", "a"], ["<s> a"]))
    teacher = ArpaTeacher(read_arpa(path), Vocabulary(["<eos>", "<unk>", "a", "zz"]), 4)
    ids, orders, scores = rank(teacher, [2], 4, gt_first=False)
    # after <s>: a from <s> a and </s> from the unigrams tie at -0.5 (<s> has no backoff):
    # by id; then <unk> and zz (not in the model) at log10 -100
    assert ids[0].tolist() == [0, 2, 1, 3] and orders[0].tolist() == [1, 2, 1, 1]
    np.testing.assert_allclose(scores[0], np.float32([-0.5, -0.5, -100, -100]) * LN10, rtol=1e-6)
    expected = kenlm_ranking(kenlm.Model(str(path)), ["<eos>", "<unk>", "a", "zz"], [], True)
    assert [e[1] for e in expected] == [0, 2, 1, 3]  # KenLM agrees


def test_nothing_reaches_back_past_a_sentence_start(tmp_path):
    """A model may hold n-grams with <s> inside (b <s> a here); after <eos> the context is
    <s> alone all the same, as in KenLM."""
    path = write(tmp_path, arpa_text(UNIGRAMS, ["-0.9\t<s> a", "a b", "b </s>", "b <s>"], ["-0.01\tb <s> a"]))
    tokens = ["<eos>", "<unk>", "a", "b"]
    teacher = ArpaTeacher(read_arpa(path), Vocabulary(tokens), 3)
    stream = [3, 0, 2]
    got = rank(teacher, stream, 3)
    assert got[1][2].tolist() == [2, 1, 1]  # a from <s> a, not from b <s> a; then unigrams
    assert_rows(*got, reference_rows(kenlm.Model(str(path)), tokens, stream, 3, True), 3, 99_999)


@pytest.mark.slow
def test_eval_of_an_arpa_file_or_model_directory_is_kenlms_perplexity(tmp_path, wt2_valid, wt2_test):
    """ngteach eval on an ARPA file gives KenLM's perplexity including and excluding OOVs
    (query's two figures), and on a model directory the same, from its own estimate."""
    import subprocess
    import sys

    (tmp_path / "train.txt").write_text(head_lines(wt2_valid, 20000), encoding="utf-8")
    (tmp_path / "test.txt").write_text(head_lines(wt2_test, 3000), encoding="utf-8")
    model = NgramModel(build_model(tmp_path / "train.txt", tmp_path / "model", order=3))
    write_arpa(estimate_kneser_ney(model, 3), tmp_path / "m.arpa")
    lm = kenlm.Model(str(tmp_path / "m.arpa"))
    scored = [(score, oov) for line in (tmp_path / "test.txt").read_text(encoding="utf-8").splitlines()
              for score, _, oov in lm.full_scores(line)]
    known = [score for score, oov in scored if not oov]
    including = 10 ** (-sum(score for score, _ in scored) / len(scored))
    excluding = 10 ** (-sum(known) / len(known))
    assert len(known) < len(scored)  # the test text has words the training text has not
    for target in ("m.arpa", "model"):
        out = subprocess.run([sys.executable, "-m", "ngteach", "eval", target, "test.txt"], cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout.splitlines()
        assert out[0] == f"test.txt: perplexity {including:.2f} over {len(scored):,} tokens"
        oov = len(scored) - len(known)
        assert out[1] == (f"text: {oov:,} out-of-vocabulary tokens (<unk>), {oov / len(scored):.1%}; perplexity "
                          f"without them {excluding:.2f}")
    missing = subprocess.run([sys.executable, "-m", "ngteach", "eval", "nothing", "test.txt"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr == ("ngteach: error: nothing: no such run directory, model "
                                                          "directory or ARPA file\n")
