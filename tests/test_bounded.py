"""The bounded-memory build (ngteach build --memory) writes the in-memory build's model
directory, byte for byte, however small its chunks and merge blocks."""
from __future__ import annotations

import subprocess
import sys
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import WordTokenizer
from ngram_teacher import build_model
from ngram_teacher import bounded
from ngram_teacher.bounded import build_bounded, parse_size

NGTEACH = [sys.executable, "-m", "ngteach"]


def same_directory(a, b) -> None:
    """Every file the same, meta.json but for the corpus's path."""
    from conftest import same_model_files

    meta = same_model_files(a, b)
    meta[0]["corpus"].pop("path"), meta[1]["corpus"].pop("path")
    assert meta[0] == meta[1]


@pytest.fixture
def tiny_chunks(monkeypatch):
    """A 1 MB budget cut into chunks and merge blocks of about 20 positions: many runs."""
    monkeypatch.setattr(bounded, "BYTES_PER_POSITION", (1 << 20) // 20)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from("a b c d e <unk> é".split()), max_size=8), min_size=1, max_size=25),
       st.integers(1, 5), st.sampled_from([(1, None), (2, None), (1, 4)]))
def test_the_same_model_as_the_in_memory_build(tmp_path_factory, words, order, vocabulary):
    tmp_path = tmp_path_factory.mktemp("bounded")
    (tmp_path / "c.txt").write_text("".join(" ".join(line) + "\n" for line in words), encoding="utf-8")
    min_count, max_size = vocabulary
    tokenize = partial(WordTokenizer.train, min_count=min_count, max_size=max_size)
    whole = build_model(tmp_path / "c.txt", tmp_path / "whole", order=order, tokenize=tokenize)
    original = bounded.BYTES_PER_POSITION
    try:
        bounded.BYTES_PER_POSITION = (1 << 20) // 7
        spilled = build_bounded(tmp_path / "c.txt", tmp_path / "spilled", order, 1 << 20, min_count, max_size)
    finally:
        bounded.BYTES_PER_POSITION = original
    same_directory(whole, spilled)


def test_real_text_by_the_command_in_many_runs(tmp_path, shakespeare, tiny_chunks):
    from conftest import head_lines

    (tmp_path / "c.txt").write_text(head_lines(shakespeare, 6000), encoding="utf-8")
    whole = build_model(tmp_path / "c.txt", tmp_path / "whole", order=4)
    spilled = build_bounded(tmp_path / "c.txt", tmp_path / "spilled", 4, 1 << 20)
    same_directory(whole, spilled)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the spill folder is gone


@pytest.mark.slow
def test_the_command_and_its_refusals(tmp_path, shakespeare):
    from conftest import head_lines

    (tmp_path / "c.txt").write_text(head_lines(shakespeare, 3000), encoding="utf-8")
    done = subprocess.run([*NGTEACH, "build", str(tmp_path / "c.txt"), "-o", str(tmp_path / "m"), "--memory", "1M",
                           "--min-count", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    same_directory(build_model(tmp_path / "c.txt", tmp_path / "whole", order=4,
                               tokenize=partial(WordTokenizer.train, min_count=2)), tmp_path / "m")
    for options, says in ((["--memory", "lots"], "--memory must be a size such as 500M or 2G, not 'lots'"),
                          (["--memory", "10k"], "--memory must be at least 1M"),
                          (["--memory", "1G", "--tokenizer", "sentencepiece", "--vocab-size", "100"],
                           "--memory builds word vocabularies")):
        done = subprocess.run([*NGTEACH, "build", str(tmp_path / "c.txt"), "-o", str(tmp_path / "x"), *options],
                              capture_output=True, text=True)
        assert done.returncode == 1 and says in done.stderr and not (tmp_path / "x").exists()


def test_a_full_disk_leaves_nothing_behind(tmp_path, full_disk, shakespeare):
    from conftest import head_lines

    (full_disk / "c.txt").write_text(head_lines(shakespeare, 3000), encoding="utf-8")
    from corpora import NgteachError

    with pytest.raises(NgteachError, match="No space left"):
        build_bounded(full_disk / "c.txt", full_disk / "m", 4, 1 << 20)
    assert sorted(p.name for p in full_disk.iterdir()) == ["c.txt"]


def test_sizes():
    assert parse_size("500M") == 500 << 20 and parse_size("2g") == 2 << 30 and parse_size("1.5GB") == 3 << 29
    assert parse_size("1048576") == 1 << 20
