"""Ranking: rank_into / write_ranks / continuations against the naive backoff teacher."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ngram_teacher.rank
from corpora import NgteachError
from conftest import head_lines
from ngram_teacher import (CountTables, NgramModel, RankFile, build_model, continuations, count_orders,
                           rank_into, write_ranks)
from reference import UNK, NaiveTeacher, tokenize_file


def tables_for(tokens, vocab_size: int, order: int) -> CountTables:
    return CountTables(list(count_orders(np.array(tokens, dtype=np.uint32), vocab_size, order)), vocab_size)


def run_rank(tables, stream, k, gt_first=True, scores=True, id_dtype=np.uint32, pad_id=None, threads=1,
             block_rows=None, min_order=1):
    """rank_into with output arrays pre-filled with garbage (so every cell must be written)."""
    n = len(stream)
    ids = np.full((n, k), 7777 % np.iinfo(id_dtype).max, dtype=id_dtype)
    orders = np.full((n, k), 99, dtype=np.uint8)
    score_arr = np.full((n, k), 123456, dtype=np.uint32) if scores else None
    done = []
    with pytest.MonkeyPatch.context() as mp:
        if block_rows is not None:
            mp.setattr(ngram_teacher.rank, "BLOCK_ROWS", block_rows)
        rank_into(tables, np.array(stream, dtype=np.uint32), ids, orders, score_arr, gt_first, pad_id, threads,
                  on_rows=done.append, min_order=min_order)
    assert sum(done) == n
    return ids, orders, score_arr


def assert_same_as_reference(teacher: NaiveTeacher, stream, ids, orders, scores, k, gt_first, pad_id,
                             min_order=1):
    exp_ids, exp_orders, exp_scores = teacher.rank(list(stream), k, gt_first, pad_id, min_order)
    n = len(stream)
    np.testing.assert_array_equal(ids, np.array(exp_ids, dtype=np.int64).reshape(n, k))
    np.testing.assert_array_equal(orders, np.array(exp_orders, dtype=np.int64).reshape(n, k))
    if scores is not None:
        np.testing.assert_array_equal(scores, np.array(exp_scores, dtype=np.int64).reshape(n, k))


# ---- hand-worked ----------------------------------------------------------------------------

# "a b c\na b d\na b c\n" with <eos>=0 a=1 b=2 c=3 d=4 (5 = a word never counted)
TINY = [1, 2, 3, 0, 1, 2, 4, 0, 1, 2, 3, 0]


def test_hand_worked_backoff_without_gt_first():
    tables = tables_for(TINY, 6, 3)
    ids, orders, scores = run_rank(tables, TINY[:4], k=4, gt_first=False)
    # unigram counts: <eos> 3, a 3, b 3, c 2, d 1
    assert ids.tolist() == [
        [0, 1, 2, 3],  # position 0: no context, unigrams by count then id
        [2, 0, 1, 3],  # after a: b (bigram), then unigrams without b
        [3, 4, 0, 1],  # after a b: c 2, d 1 (trigram); bigram after b adds nothing new
        [0, 1, 2, 3],  # after b c: <eos> (trigram), then unigrams
    ]
    assert orders.tolist() == [[1, 1, 1, 1], [2, 1, 1, 1], [3, 3, 1, 1], [3, 1, 1, 1]]
    assert scores.tolist() == [[3, 3, 3, 2], [3, 3, 3, 2], [2, 1, 3, 3], [2, 3, 3, 2]]


def test_hand_worked_gt_first():
    tables = tables_for(TINY, 6, 3)
    stream = [1, 2, 4, 5, 2]  # a b d <never counted> b
    ids, orders, scores = run_rank(tables, stream, k=3, gt_first=True)
    assert ids.tolist() == [
        [1, 0, 2],  # a: unigram (count 3); then <eos>, b
        [2, 0, 1],  # b after a: bigram a b (3); backoff: b skipped, then <eos>, a
        [4, 3, 0],  # d after a b: trigram (1); backoff c (trigram), then <eos>
        [5, 0, 1],  # never-counted word: order 1, score 0; after b d: <eos> (trigram b d <eos>)
        [2, 0, 1],  # b after d <unk>: unigram only
    ]
    assert orders.tolist() == [[1, 1, 1], [2, 1, 1], [3, 3, 1], [1, 3, 1], [1, 1, 1]]
    assert scores.tolist() == [[3, 3, 3], [3, 3, 3], [1, 2, 3], [0, 1, 3], [3, 3, 3]]


def test_padding_when_fewer_words_than_k():
    tables = tables_for([0, 1, 0], 4, 2)  # only words 0 and 1 seen
    ids, orders, scores = run_rank(tables, [0, 1], k=4, gt_first=False, id_dtype=np.uint16)
    assert ids.tolist() == [[0, 1, 65535, 65535], [1, 0, 65535, 65535]]
    assert orders.tolist() == [[1, 1, 0, 0], [2, 1, 0, 0]]
    assert scores.tolist() == [[2, 1, 0, 0], [1, 2, 0, 0]]
    ids, orders, scores = run_rank(tables, [3], k=3, gt_first=True, pad_id=9)
    assert ids.tolist() == [[3, 0, 1]]  # word 3 never seen: order 1, score 0
    assert orders.tolist() == [[1, 1, 1]] and scores.tolist() == [[0, 2, 1]]
    ids, orders, scores = run_rank(tables, [3], k=5, gt_first=True, pad_id=9)
    assert ids.tolist() == [[3, 0, 1, 9, 9]] and orders.tolist() == [[1, 1, 1, 0, 0]]


def test_empty_counted_corpus_pads_everything():
    tables = tables_for([], 3, 2)
    ids, orders, scores = run_rank(tables, [1, 2], k=2, gt_first=False, pad_id=7)
    assert ids.tolist() == [[7, 7], [7, 7]] and orders.tolist() == [[0, 0], [0, 0]]
    ids, orders, scores = run_rank(tables, [1, 2], k=2, gt_first=True, pad_id=7)
    assert ids.tolist() == [[1, 7], [2, 7]] and orders.tolist() == [[1, 0], [1, 0]]
    assert scores.tolist() == [[0, 0], [0, 0]]


def test_empty_stream():
    tables = tables_for(TINY, 6, 3)
    ids, orders, scores = run_rank(tables, [], k=3)
    assert ids.shape == (0, 3)


# ---- random corpora -------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_corpora_match_naive_teacher(data):
    vocab_size = data.draw(st.integers(1, 8), label="vocab_size")
    order = data.draw(st.integers(1, 5), label="order")
    counted = data.draw(st.lists(st.integers(0, vocab_size - 1), max_size=300), label="counted")
    if data.draw(st.booleans(), label="rank the counted corpus"):
        stream = counted
    else:
        stream = data.draw(st.lists(st.integers(0, vocab_size - 1), max_size=120), label="stream")
    k = data.draw(st.integers(1, 10), label="k")
    gt_first = data.draw(st.booleans(), label="gt_first")
    scores = data.draw(st.booleans(), label="scores")
    threads = data.draw(st.integers(1, 3), label="threads")
    block_rows = data.draw(st.sampled_from([1, 2, 3, 7, 1 << 16]), label="block_rows")
    id_dtype = data.draw(st.sampled_from([np.uint16, np.uint32]), label="id_dtype")
    pad_id = data.draw(st.sampled_from([None, 12345]), label="pad_id")
    min_order = data.draw(st.integers(1, order), label="min_order")

    tables = tables_for(counted, vocab_size, order)
    ids, orders, score_arr = run_rank(tables, stream, k, gt_first, scores, id_dtype, pad_id, threads, block_rows,
                                      min_order)
    expected_pad = int(np.iinfo(id_dtype).max) if pad_id is None else pad_id
    assert_same_as_reference(NaiveTeacher(counted, order), stream, ids, orders, score_arr, k, gt_first,
                             expected_pad, min_order)


# ---- real text ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shakespeare_ids():
    """Tiny Shakespeare as ids: (first 20k tokens, a later 6k-token slice, vocab size).

    Ids number the words of the first 20k tokens in sorted order; every other word is
    <unk>, an id never counted."""
    from conftest import SHAKESPEARE, shared_corpus

    words = tokenize_file(shared_corpus(SHAKESPEARE))
    counted_words, other_words = words[:20_000], words[150_000:156_000]
    ids_of = {w: i for i, w in enumerate(sorted(set(counted_words)))}
    unk = len(ids_of)
    counted = [ids_of[w] for w in counted_words]
    other = [ids_of.get(w, unk) for w in other_words]
    assert unk in other  # the other slice has words the counted part never saw
    return counted, other, unk + 1


@pytest.fixture(scope="module")
def shakespeare_teacher(shakespeare_ids):
    counted, _, vocab_size = shakespeare_ids
    return tables_for(counted, vocab_size, 4), NaiveTeacher(counted, 4)


@pytest.mark.parametrize("gt_first", [True, False])
def test_real_text_own_corpus(shakespeare_ids, shakespeare_teacher, gt_first):
    counted, _, _ = shakespeare_ids
    tables, teacher = shakespeare_teacher
    ids, orders, scores = run_rank(tables, counted, 20, gt_first, threads=2, block_rows=4099)
    assert_same_as_reference(teacher, counted, ids, orders, scores, 20, gt_first, 0xFFFFFFFF)
    if gt_first:  # ranking its own corpus, the true token is always found at the top order
        expected_top = np.minimum(np.arange(len(counted)) + 1, 4)
        np.testing.assert_array_equal(orders[:, 0], expected_top)


@pytest.mark.parametrize("gt_first", [True, False])
def test_real_text_other_corpus(shakespeare_ids, shakespeare_teacher, gt_first):
    _, other, _ = shakespeare_ids
    tables, teacher = shakespeare_teacher
    ids, orders, scores = run_rank(tables, other, 20, gt_first, threads=2, block_rows=7, id_dtype=np.uint16)
    assert_same_as_reference(teacher, other, ids, orders, scores, 20, gt_first, 0xFFFF)
    # unseen contexts really happen: in some rows no entry comes from order 4
    assert (orders[3:].max(axis=1) < 4).any()


def test_real_text_threads_and_block_size_do_not_matter(shakespeare_ids, shakespeare_teacher):
    counted, other, _ = shakespeare_ids
    tables, _ = shakespeare_teacher
    stream = other + counted[:3000]
    base = run_rank(tables, stream, 20, True, threads=1, block_rows=1 << 16)
    for threads, block in [(2, 1 << 16), (2, 7), (1, 7), (2, 1), (2, 4096)]:
        got = run_rank(tables, stream, 20, True, threads=threads, block_rows=block)
        for a, b in zip(base, got):
            np.testing.assert_array_equal(a, b)


# ---- write_ranks through a model ------------------------------------------------------------

@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A model of ~4000 tokens of Tiny Shakespeare (or of a synthetic text when absent),
    and a different text to rank."""
    from conftest import SHAKESPEARE

    root = tmp_path_factory.mktemp("small_model")
    if SHAKESPEARE.is_file():
        text = head_lines(SHAKESPEARE, 4000)
        lines = SHAKESPEARE.read_text(encoding="utf-8").splitlines(keepends=True)
        other = "".join(lines[20_000:20_400])
    else:
        rng = np.random.default_rng(3)
        words = [f"w{i}" for i in range(60)]
        text = "".join(" ".join(rng.choice(words, 8)) + "\n" for _ in range(500))
        other = "".join(" ".join(rng.choice(words + ["new"], 8)) + "\n" for _ in range(50))
    corpus, other_path = root / "corpus.txt", root / "other.txt"
    corpus.write_text(text, encoding="utf-8")
    other_path.write_text(other, encoding="utf-8")
    model = NgramModel(build_model(corpus, root / "model", order=3))
    return model, corpus, other_path


def ids_of_file(model, path) -> list[int]:
    return [model.vocab.id(w) for w in tokenize_file(path)]


@pytest.mark.parametrize("gt_first, with_scores", [(True, False), (False, True), (True, True)])
def test_write_ranks_file_matches_reference(small_model, tmp_path, gt_first, with_scores):
    model, corpus, other = small_model
    stream = np.array(ids_of_file(model, other), dtype=np.uint32)
    target = tmp_path / "ranks.bin"
    write_ranks(model, stream, target, 12, gt_first, with_scores, corpus="other.txt", threads=2)
    assert sorted(os.listdir(tmp_path)) == ["ranks.bin"]  # no temporary file left beside it
    ranks = RankFile(target)
    h = ranks.header
    vocab_txt = (model.directory / "vocab.txt").read_bytes()
    assert h["n_positions"] == len(stream) and h["k"] == 12 and ranks.k == 12 and len(ranks) == len(stream)
    assert h["id_dtype"] == "<u2" and h["pad_id"] == 65535
    assert h["vocab_size"] == len(vocab_txt.decode().split("\n")) - 1
    assert h["vocab_sha256"] == hashlib.sha256(vocab_txt).hexdigest()
    assert h["tokens_sha256"] == hashlib.sha256(stream.astype("<u4").tobytes()).hexdigest()
    assert h["gt_first"] is gt_first
    assert h["corpus"] == "other.txt"
    assert h["teacher"]["order"] == 3 and h["teacher"]["kind"] == "count-ngram"
    assert h["scores"] == ({"kind": "count", "dtype": "<u4"} if with_scores else None)
    assert (ranks.scores is not None) == with_scores
    teacher = NaiveTeacher(ids_of_file(model, corpus), 3)
    assert_same_as_reference(teacher, stream.tolist(), ranks.ids, ranks.orders, ranks.scores, 12, gt_first,
                             65535)
    ranks.check_matches(model.meta["vocab_sha256"], h["tokens_sha256"])
    with pytest.raises(NgteachError):  # made for the other text, not the model's own corpus
        ranks.check_matches(model.meta["vocab_sha256"], model.meta["tokens_sha256"])


@pytest.mark.parametrize("n_words, id_dtype", [(65_532, "<u2"), (65_533, "<u4")])
def test_write_ranks_id_dtype_at_the_uint16_limit(tmp_path, n_words, id_dtype):
    # vocabulary = the words + <eos> + <unk>: 65,534 entries fit uint16 with padding 65535,
    # 65,535 entries need uint32
    words = [f"w{i}" for i in range(n_words)]
    lines = [" ".join(words[i:i + 9]) for i in range(0, n_words, 9)]
    corpus = tmp_path / "big.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = NgramModel(build_model(corpus, tmp_path / "model", order=2))
    assert len(model.vocab) == n_words + 2
    stream = model.tokens()
    write_ranks(model, stream, tmp_path / "r.bin", 3, gt_first=True, with_scores=True)
    ranks = RankFile(tmp_path / "r.bin")
    assert ranks.header["id_dtype"] == id_dtype and ranks.ids.dtype == np.dtype(id_dtype)
    assert ranks.header["pad_id"] == np.iinfo(np.dtype(id_dtype)).max
    np.testing.assert_array_equal(ranks.ids[:, 0], stream)  # gt first: every id, the largest included
    assert model.vocab.tokens[-1] == UNK  # count 0, so the last id; the word before it is the largest used
    assert int(ranks.ids[:, 0].max()) == len(model.vocab) - 2
    teacher = NaiveTeacher(stream.tolist(), 2)
    head = stream[:2000].tolist()
    exp_ids, exp_orders, exp_scores = teacher.rank(head, 3, True, ranks.header["pad_id"])
    assert ranks.ids[:2000].tolist() == exp_ids and ranks.orders[:2000].tolist() == exp_orders
    assert ranks.scores[:2000].tolist() == exp_scores


def test_write_ranks_to_a_stream_equals_file(small_model, tmp_path):
    model, _, other = small_model
    stream = np.array(ids_of_file(model, other), dtype=np.uint32)
    buffer = io.BytesIO()
    write_ranks(model, stream, buffer, 5, with_scores=True, threads=1)
    write_ranks(model, stream, tmp_path / "a.bin", 5, with_scores=True, threads=2)
    assert buffer.getvalue() == (tmp_path / "a.bin").read_bytes()


def test_write_ranks_refuses_k_0(small_model, tmp_path):
    model, _, _ = small_model
    with pytest.raises(NgteachError):
        write_ranks(model, np.array([0, 1], np.uint32), tmp_path / "r.bin", 0)
    assert os.listdir(tmp_path) == []


def test_write_ranks_failure_leaves_nothing(small_model, tmp_path):
    model, _, _ = small_model

    def boom(rows):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_ranks(model, model.tokens(), tmp_path / "r.bin", 4, on_rows=boom)
    assert os.listdir(tmp_path) == []
    buffer = io.BytesIO()
    tmp_before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(RuntimeError):
        write_ranks(model, model.tokens(), buffer, 4, on_rows=boom)
    assert buffer.getvalue() == b""
    leftovers = set(os.listdir(tempfile.gettempdir())) - tmp_before
    assert not [n for n in leftovers if n.startswith(".ranks.")]


# ---- continuations (ngteach query) ---------------------------------------------------------

@pytest.fixture
def tiny_model(tiny_corpus, tmp_path):
    return NgramModel(build_model(tiny_corpus, tmp_path / "model", order=3))


def as_tuples(candidates):
    return [(c.word, c.order, c.count) for c in candidates]


def test_continuations_hand_worked(tiny_model):
    # corpus "a b c\na b d\na b c\n": a b <eos> 3 each, c 2, d 1; vocab <eos> a b c d <unk>
    assert tiny_model.vocab.tokens == ["<eos>", "a", "b", "c", "d", UNK]
    got = continuations(tiny_model, "a b", 5)
    assert as_tuples(got) == [("c", 3, 2), ("d", 3, 1), ("<eos>", 1, 3), ("a", 1, 3), ("b", 1, 3)]
    assert [c.id for c in got] == [3, 4, 0, 1, 2]
    # one word of context: bigrams after b, then unigrams
    assert as_tuples(continuations(tiny_model, "b", 3)) == [("c", 2, 2), ("d", 2, 1), ("<eos>", 1, 3)]
    # unknown word -> <unk> (never seen): the trigram context is unseen, back off to b
    assert as_tuples(continuations(tiny_model, "zzz b", 3)) == [("c", 2, 2), ("d", 2, 1), ("<eos>", 1, 3)]
    # across a line end: c <eos> is followed by a once (the other c <eos> ends the corpus)
    assert as_tuples(continuations(tiny_model, "c <eos>", 4)) == [("a", 3, 1), ("<eos>", 1, 3), ("b", 1, 3),
                                                                 ("c", 1, 2)]
    # no context: every counted word, no padding, <unk> (count 0) never listed
    assert as_tuples(continuations(tiny_model, "", 9)) == [("<eos>", 1, 3), ("a", 1, 3), ("b", 1, 3),
                                                          ("c", 1, 2), ("d", 1, 1)]
    # only the last N-1 words count: "x y a b" ranks like "a b"
    assert as_tuples(continuations(tiny_model, "x y a b", 2)) == [("c", 3, 2), ("d", 3, 1)]
    # the trigram context d d was never seen: bigrams after d, then unigrams
    assert as_tuples(continuations(tiny_model, "d d", 2)) == [("<eos>", 2, 1), ("a", 1, 3)]


def test_continuations_k_must_be_positive(tiny_model):
    with pytest.raises(NgteachError):
        continuations(tiny_model, "a", 0)


# ---- high orders --------------------------------------------------------------------------

def test_highest_model_order_matches_reference():
    from ngram_teacher.model import MAX_ORDER

    rng = np.random.default_rng(11)
    counted = rng.integers(0, 3, 400).tolist()  # 3 words: long contexts repeat
    stream = counted[:150] + rng.integers(0, 3, 100).tolist()
    tables = tables_for(counted, 3, MAX_ORDER)
    ids, orders, scores = run_rank(tables, stream, 4, True, threads=2, block_rows=5)
    assert_same_as_reference(NaiveTeacher(counted, MAX_ORDER), stream, ids, orders, scores, 4, True, 0xFFFFFFFF)
    assert orders.max() == MAX_ORDER


RANK_ORDER_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from reference import NaiveTeacher
from ngram_teacher import CountTables, count_orders, rank_into
order = {order}
tokens = np.random.default_rng(0).integers(0, 3, 300).astype(np.uint32)
tables = CountTables(list(count_orders(tokens, 3, order)), 3)
ids = np.zeros((300, 4), np.uint32); orders = np.zeros((300, 4), np.uint8); scores = np.zeros((300, 4), np.uint32)
try:
    rank_into(tables, tokens, ids, orders, scores, True, None, 1)
except Exception as e:  # refusing such tables cleanly is fine
    print("refused", type(e).__name__, e)
    sys.exit(0)
expected = NaiveTeacher(tokens.tolist(), order).rank(tokens.tolist(), 4, True, 0xFFFFFFFF)
print("ok" if [ids.tolist(), orders.tolist(), scores.tolist()] == list(expected) else "wrong")
"""


@pytest.mark.parametrize("order", [17, 24])
def test_orders_beyond_the_kernel_limit_do_not_crash(order):
    # count_orders accepts any order; ranking such tables must either work or refuse,
    # never corrupt memory. Run in a child process so that a crash cannot take pytest down.
    code = RANK_ORDER_SCRIPT.format(tests=str(Path(__file__).resolve().parent), order=order)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-500:]}"
    assert result.stdout.split()[0] in ("ok", "refused"), result.stdout


def test_min_order_2_leaves_out_the_unigram_fill_ins():
    """Hand-worked on TINY: after "a b", order 3 lists c (2) then d (1), and order 2 (after
    "b") adds nothing new; with min_order 2 the rest is padding instead of unigrams; the
    truth still leads with gt_first."""
    stream = [1, 2, 3]
    ids, orders, _ = run_rank(tables_for(TINY, 6, 3), stream, 4, gt_first=False, min_order=2)
    assert ids[2].tolist()[:2] == [3, 4] and orders[2].tolist() == [3, 3, 0, 0]
    ids, orders, _ = run_rank(tables_for(TINY, 6, 3), [1, 2, 4], 4, gt_first=True, min_order=2)
    assert ids[2].tolist()[:2] == [4, 3] and orders[2].tolist() == [3, 3, 0, 0]
