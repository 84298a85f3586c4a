"""The cloze teacher against a brute-force reference: every position, every level, by loops."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ngram_teacher import NgramModel, RankFile, build_model, load_teacher, write_ranks
from ngram_teacher.cloze import ClozeTeacher, levels


def reference_row(corpus: list[int], stream: list[int], i: int, order: int, k: int, gt_first: bool,
                  own: bool) -> list[tuple[int, int, int]]:
    """(word, order, count) of position i: each level's words counted over every matching j."""
    entries, listed, truth_entry = [], set(), None
    truth = stream[i]
    if gt_first:
        listed.add(truth)
    for left, right in levels(order):
        if i < left or i + right >= len(stream):
            continue
        context = (stream[i - left:i], stream[i + 1:i + 1 + right])
        counts: dict[int, int] = {}
        for j in range(left, len(corpus) - right):
            if own and j == i:
                continue
            if (corpus[j - left:j], corpus[j + 1:j + 1 + right]) == context:
                counts[corpus[j]] = counts.get(corpus[j], 0) + 1
        if truth_entry is None and counts.get(truth, 0) > 0:
            truth_entry = (truth, left + right + 1, counts[truth])
        for word in sorted(counts, key=lambda w: (-counts[w], w)):
            if word not in listed and len(entries) < k - gt_first:
                listed.add(word)
                entries.append((word, left + right + 1, counts[word]))
    if gt_first:
        entries.insert(0, truth_entry or (truth, 1, 0))
    return entries


def teacher_of(tmp_path, tokens: list[int], order: int) -> ClozeTeacher:
    """A model directory whose corpus is ``tokens`` (word i is "w{i}", one line)."""
    (tmp_path / "c.txt").write_text(" ".join(f"w{t}" for t in tokens) + "\n", encoding="utf-8")
    return ClozeTeacher(NgramModel(build_model(tmp_path / "c.txt", tmp_path / "m", order=order)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(1, 4), st.integers(1, 6), st.booleans())
def test_rows_match_the_brute_force_reference(tmp_path_factory, words, order, k, gt_first):
    tmp_path = tmp_path_factory.mktemp("cloze")
    teacher = teacher_of(tmp_path, words, order)
    corpus = teacher.corpus.tolist()
    for stream, own in ((corpus, True), (corpus[::-1], corpus[::-1] == corpus)):
        ids = np.empty((len(stream), k), np.uint32)
        orders = np.empty((len(stream), k), np.uint8)
        scores = np.empty((len(stream), k), np.uint32)
        teacher.rank_into(np.array(stream), ids, orders, scores, gt_first, 99)
        for i in range(len(stream)):
            expected = reference_row(corpus, stream, i, order, k, gt_first, own)
            got = [(int(w), int(o), int(c)) for w, o, c in zip(ids[i], orders[i], scores[i]) if o > 0]
            assert got == expected, (i, stream)
            assert all(w == 99 for w, o in zip(ids[i], orders[i]) if o == 0)


def test_a_ranks_file_of_real_text_and_its_declared_partitions(tmp_path, wt2_valid):
    from conftest import head_lines

    (tmp_path / "t.txt").write_text(head_lines(wt2_valid, 3000), encoding="utf-8")
    model = NgramModel(build_model(tmp_path / "t.txt", tmp_path / "m", order=3))
    teacher = load_teacher(f"cloze:{tmp_path / 'm'}", model, 8)
    write_ranks(teacher, model.tokens(), tmp_path / "r.bin", 8, with_scores=True)
    ranks = RankFile(tmp_path / "r.bin")
    assert ranks.header["teacher"]["kind"] == "cloze-ngram" and ranks.header["teacher"]["partition"] == "order"
    corpus = model.tokens().tolist()
    for i in (0, 1, 500, 1234, len(corpus) - 1):
        expected = reference_row(corpus, corpus, i, 3, 8, True, True)
        got = [(int(w), int(o), int(c)) for w, o, c in zip(ranks.ids[i], ranks.orders[i], ranks.scores[i]) if o > 0]
        assert got == expected
    # the orders of a row never rise: a row is its levels, best first
    assert (np.diff(np.asarray(ranks.orders[:, 1:]).astype(int), axis=1) <= 0).all()


def test_query_shows_what_the_gap_ranks(tmp_path):
    import subprocess
    import sys

    (tmp_path / "c.txt").write_text("a x b\na y b\na x b\nc y d\n", encoding="utf-8")
    build_model(tmp_path / "c.txt", tmp_path / "m", order=3)
    out = subprocess.run([sys.executable, "-m", "ngteach", "query", "a _ b", "-m", str(tmp_path / "m")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    # "a _ b": x twice, y once, at order 3 (one word each side); then y's and the rest at lower orders
    assert out[0] == "between 'a _ b' (order 3 model, two-sided):"
    assert [line.split()[1:] for line in out[2:4]] == [["3", "2", "x"], ["3", "1", "y"]]
