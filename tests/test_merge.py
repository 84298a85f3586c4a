"""Shards built apart and merged give the model of the whole corpus, file for file."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import NgteachError
from ngram_teacher import NgramModel, build_model
from ngram_teacher.merge import merge_models

NGTEACH = [sys.executable, "-m", "ngteach"]


def same_models(merged, whole) -> None:
    """Every file the same, meta.json but for its corpus record."""
    from conftest import same_model_files

    meta, expected = same_model_files(merged, whole)
    assert [s["bytes"] for s in meta.pop("corpus")["shards"]] and expected.pop("corpus")
    assert meta == expected


def build_shards(tmp_path, lines: list[str], cuts: list[int], order: int, **options):
    cuts = [0, *cuts, len(lines)]
    shards = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        (tmp_path / f"s{i}.txt").write_text("".join(lines[a:b]), encoding="utf-8")
        shards.append(build_model(tmp_path / f"s{i}.txt", tmp_path / f"s{i}", order=order, **options))
    (tmp_path / "whole.txt").write_text("".join(lines), encoding="utf-8")
    return shards, build_model(tmp_path / "whole.txt", tmp_path / "whole", order=order, **options)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from("a b c d <unk> é".split()), max_size=6), min_size=3, max_size=12),
       st.integers(1, 4), st.data())
def test_merged_shards_are_the_whole_corpus_model(tmp_path_factory, words, order, data):
    tmp_path = tmp_path_factory.mktemp("merge")
    lines = [" ".join(line) + "\n" for line in words]
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(lines) - 1), min_size=1, max_size=3))))
    shards, whole = build_shards(tmp_path, lines, cuts, order)
    same_models(merge_models(shards, tmp_path / "merged"), whole)


def test_real_text_in_three_shards_by_the_command(tmp_path, wt2_valid):
    from conftest import head_lines

    lines = head_lines(wt2_valid, 20000).splitlines(keepends=True)
    shards, whole = build_shards(tmp_path, lines, [len(lines) // 3, 2 * len(lines) // 3], 4)
    done = subprocess.run([*NGTEACH, "merge", *map(str, shards), "--out", str(tmp_path / "merged")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "merged 3 shards" in done.stderr
    same_models(tmp_path / "merged", whole)
    # and it is a model like any other: the count teacher ranks from it
    assert np.array_equal(NgramModel(tmp_path / "merged").tables.orders[3].counts, NgramModel(whole).tables.orders[3].counts)


def test_shards_that_cannot_merge_exactly_are_refused(tmp_path):
    from corpora import WordTokenizer
    from functools import partial

    lines = ["a b c\n", "a b d\n", "c d e\n", "e e a\n"]
    rare = partial(WordTokenizer.train, min_count=2)
    shards, _ = build_shards(tmp_path, lines, [2], 2, tokenize=rare)
    with pytest.raises(NgteachError, match="built with --min-count or --max-vocab"):
        merge_models(shards, tmp_path / "merged")
    other = build_model(tmp_path / "s0.txt", tmp_path / "o3", order=3)
    with pytest.raises(NgteachError, match="order 3, but .* has order 2"):
        merge_models([build_model(tmp_path / "s1.txt", tmp_path / "o2", order=2), other], tmp_path / "merged")
    with pytest.raises(NgteachError, match="at least two"):
        merge_models([other], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
