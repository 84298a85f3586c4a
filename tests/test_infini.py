"""The unbounded-order (infini) teacher against a brute-force reference: every position's
match length with every other position, by loops, straight from the definition."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ngram_teacher import InfiniTeacher, NgramModel, RankFile, build_model, load_teacher, write_ranks
from ngram_teacher.infini import INDEX_FILES, INDEX_META, load_index


def reference_row(corpus: list[int], stream: list[int], i: int, k: int, gt_first: bool, own: bool,
                  min_order: int = 1) -> list[tuple[int, int, int]]:
    """(word, order, count) of position i of ``stream``: the match length of every
    position j of ``corpus`` (j != i when ``stream`` is ``corpus``), then level by level."""
    match = {}
    for j in range(len(corpus)):
        if own and j == i:
            continue
        length = 0
        while length < min(i, j) and corpus[j - 1 - length] == stream[i - 1 - length]:
            length += 1
        match[j] = length
    truth, entries, listed = stream[i], [], set()
    if gt_first:
        best = max((m for j, m in match.items() if corpus[j] == truth), default=None)
        count = best is not None and sum(1 for j, m in match.items() if m >= best and corpus[j] == truth)
        entries.append((truth, min(best + 1, 255), count) if best is not None else (truth, 1, 0))
        listed.add(truth)
    for level in range(max(match.values(), default=0), -1, -1):
        if min(level + 1, 255) < min_order:
            break
        counts = Counter(corpus[j] for j, m in match.items() if m >= level)
        for word in sorted(counts, key=lambda w: (-counts[w], w)):
            if word not in listed and len(entries) < k:
                listed.add(word)
                entries.append((word, min(level + 1, 255), counts[word]))
    return entries


def teacher_of(tmp_path, tokens: list[int]) -> InfiniTeacher:
    """A teacher whose corpus is ``tokens`` (word t is "w{t}", all on one line)."""
    (tmp_path / "c.txt").write_text(" ".join(f"w{t}" for t in tokens) + "\n", encoding="utf-8")
    return InfiniTeacher(NgramModel(build_model(tmp_path / "c.txt", tmp_path / "m", order=1)))


def rows(teacher, stream, k, gt_first, min_order=1):
    ids = np.empty((len(stream), k), np.uint32)
    orders = np.empty((len(stream), k), np.uint8)
    scores = np.empty((len(stream), k), np.uint32)
    teacher.rank_into(np.asarray(stream, np.uint32), ids, orders, scores, gt_first, 99, min_order)
    assert all(w == 99 for w, o in zip(ids.ravel(), orders.ravel()) if o == 0)
    return [[(int(w), int(o), int(c)) for w, o, c in zip(ids[i], orders[i], scores[i]) if o > 0]
            for i in range(len(stream))]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.lists(st.integers(0, 4), min_size=1, max_size=12),
       st.integers(1, 7), st.booleans(), st.integers(1, 3))
def test_rows_match_the_brute_force_reference(tmp_path_factory, words, other, k, gt_first, min_order):
    teacher = teacher_of(tmp_path_factory.mktemp("infini"), words)
    corpus = teacher.corpus.tolist()
    # the corpus itself (each position excluded from its own row), then another text
    other = [w % len(teacher.model.vocab) for w in other]
    for stream, own in ((corpus, True), (other, other == corpus)):
        got = rows(teacher, stream, k, gt_first, min_order)
        for i in range(len(stream)):
            assert got[i] == reference_row(corpus, stream, i, k, gt_first, own, min_order), (i, stream)


def test_a_long_repeat_is_one_deep_level(tmp_path):
    # a 300-token passage that occurs twice: inside the second copy, the first copy's words
    # match all the way back, deeper than any fixed order and past the one-byte order's cap
    rng = np.random.default_rng(0)
    passage = rng.integers(0, 50, 300).tolist()
    corpus = rng.integers(0, 50, 40).tolist() + passage + rng.integers(0, 50, 40).tolist() + passage
    teacher = teacher_of(tmp_path, corpus)
    corpus = teacher.corpus.tolist()
    got = rows(teacher, corpus, 5, False)
    for i in (len(corpus) - 1, len(corpus) - 200, len(corpus) - 290):
        assert got[i] == reference_row(corpus, corpus, i, 5, False, True)
    assert got[-1][0][1] == 255  # a match of ~300 tokens: the top order


def test_real_text_its_index_and_its_declared_partitions(tmp_path, wt2_valid):
    from conftest import head_lines

    (tmp_path / "t.txt").write_text(head_lines(wt2_valid, 400), encoding="utf-8")
    model = NgramModel(build_model(tmp_path / "t.txt", tmp_path / "m", order=2))
    teacher = load_teacher(f"infini:{tmp_path / 'm'}", model, 8)
    write_ranks(teacher, model.tokens(), tmp_path / "r.bin", 8, with_scores=True)
    # the index is kept in the model directory, for the corpus it was made of
    assert all((tmp_path / "m" / name).is_file() for name in (*INDEX_FILES.values(), INDEX_META))
    assert load_index(model) is not None
    ranks = RankFile(tmp_path / "r.bin")
    assert ranks.header["teacher"]["kind"] == "infini-ngram" and ranks.header["teacher"]["partition"] == "order"
    corpus = model.tokens().tolist()
    for i in (0, 1, 77, len(corpus) // 2, len(corpus) - 1):
        got = [(int(w), int(o), int(c)) for w, o, c in zip(ranks.ids[i], ranks.orders[i], ranks.scores[i]) if o > 0]
        assert got == reference_row(corpus, corpus, i, 8, True, True)
    # after the true word, the orders of a row never rise: a row is its levels, best first
    assert (np.diff(np.asarray(ranks.orders[:, 1:]).astype(int), axis=1) <= 0).all()
    # rows of runs (a batch) are the whole stream's rows at those positions
    ids, orders = np.empty((30, 8), np.uint32), np.empty((30, 8), np.uint8)
    teacher.rank_runs(model.tokens(), [(5, 15), (100, 120)], ids, orders, None, True, ranks.header["pad_id"])
    assert (ids == np.concatenate([ranks.ids[5:15], ranks.ids[100:120]])).all()


def test_a_stale_or_truncated_index_is_made_anew(tmp_path):
    teacher = teacher_of(tmp_path, [1, 2, 3, 1, 2, 3, 1])
    expected = rows(teacher, teacher.corpus, 3, True)
    # an index of another corpus (the same file names, a different record) is not used
    (tmp_path / "m" / INDEX_META).write_text('{"format": "ngteach-infini-index", "tokens_sha256": "x"}')
    assert load_index(teacher.model) is None
    assert rows(InfiniTeacher(teacher.model), teacher.corpus, 3, True) == expected
    assert load_index(teacher.model) is not None
    # nor is a truncated one
    sa_path = tmp_path / "m" / INDEX_FILES["sa"]
    sa_path.write_bytes(sa_path.read_bytes()[:-4])
    assert load_index(teacher.model) is None
    assert rows(InfiniTeacher(teacher.model), teacher.corpus, 3, True) == expected


def test_a_model_directory_without_room_keeps_the_index_in_memory(tmp_path, full_disk):
    import shutil

    teacher = teacher_of(tmp_path, list(range(5)) * 200)
    expected = rows(teacher, teacher.corpus, 4, True)
    shutil.copytree(tmp_path / "m", full_disk / "m", ignore=shutil.ignore_patterns("infini*"))
    with pytest.raises(OSError):  # fill what room is left
        with open(full_disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 1024)
                f.flush()
    assert rows(InfiniTeacher(NgramModel(full_disk / "m")), teacher.corpus, 4, True) == expected
    assert not [p.name for p in (full_disk / "m").iterdir() if "infini" in p.name]  # nothing half-written


def test_build_indexes_and_rank_ranks_another_text(tmp_path):
    (tmp_path / "c.txt").write_text("the cat sat on the mat\nthe cat sat on the hat\n", encoding="utf-8")
    (tmp_path / "o.txt").write_text("a cat sat on the mat\n", encoding="utf-8")
    ngteach = [sys.executable, "-m", "ngteach"]
    subprocess.run([*ngteach, "build", str(tmp_path / "c.txt"), "-o", str(tmp_path / "m"), "--infini"],
                   check=True, capture_output=True)
    assert (tmp_path / "m" / INDEX_META).is_file()
    done = subprocess.run([*ngteach, "rank", "-m", str(tmp_path / "m"), "--teacher", f"infini:{tmp_path / 'm'}",
                           "--corpus", str(tmp_path / "o.txt"), "--no-gt-first", "--k", "3", "--scores",
                           "-o", str(tmp_path / "r.bin")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ranks = RankFile(tmp_path / "r.bin")
    vocab = NgramModel(tmp_path / "m").vocab.tokens
    # before "mat": "cat sat on the" matches 4 tokens back in the corpus ("a" is unseen);
    # there both lines went on, once each, to mat and hat (ties by word id)
    row = [(vocab[w], int(o), int(c)) for w, o, c in zip(ranks.ids[5], ranks.orders[5], ranks.scores[5])]
    assert sorted(row[:2]) == [("hat", 5, 1), ("mat", 5, 1)] and row[2][1] == 2


def test_query_shows_what_the_unbounded_teacher_ranks(tmp_path):
    (tmp_path / "c.txt").write_text("x a b c d\ny a b c e\nz b c d\n", encoding="utf-8")
    build_model(tmp_path / "c.txt", tmp_path / "m", order=2)
    out = subprocess.run([sys.executable, "-m", "ngteach", "query", "a b c", "--infini", "-m", str(tmp_path / "m")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    # "a b c" matches three words back twice (then d, e), "b c" a third time (d again)
    assert out[0] == "after 'a b c' (unbounded order):"
    assert [line.split()[1:] for line in out[2:4]] == [["4", "1", "d"], ["4", "1", "e"]]
