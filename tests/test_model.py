"""The model directory: contents of meta.json, reproducible builds, safe replacement,
and refusal of missing or damaged models."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from conftest import head_lines
from corpora import NgteachError
from ngram_teacher import NgramModel, build_model
from reference import UNK, all_ngram_counts, tokenize_file, vocabulary

ARRAYS = ("words", "counts", "offsets", "cont_words", "cont_counts")


def all_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def text_corpus(write_corpus, shakespeare_text):
    return write_corpus(shakespeare_text, "corpus.txt")


@pytest.fixture(scope="module")
def shakespeare_text():
    """~3000 tokens of real text (or a synthetic stand-in when the shared data is absent)."""
    from conftest import SHAKESPEARE

    if SHAKESPEARE.is_file():
        return head_lines(SHAKESPEARE, 3000)
    rng = np.random.default_rng(0)
    return "".join(" ".join(rng.choice(["to", "be", "or", "not", "that", "is"], 7)) + "\n" for _ in range(400))


def test_meta_json_fields(text_corpus, tmp_path):
    out = build_model(text_corpus, tmp_path / "model", order=4)
    assert out == tmp_path / "model"
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    words = tokenize_file(text_corpus)
    vocab = vocabulary(words)
    ids = [vocab.index(w) for w in words]
    counts = all_ngram_counts(ids, 4)
    assert meta["format"] == "ngteach-model" and meta["format_version"] == 1
    assert meta["tool_version"] == version("ngteach")
    assert meta["order"] == 4
    assert meta["n_tokens"] == len(words)
    assert meta["vocab_size"] == len(vocab)
    assert meta["ngrams"] == [len(counts[m]) for m in (1, 2, 3, 4)]
    assert meta["tokenizer"] == {"kind": "word", "min_count": 1, "max_size": None}
    vocab_txt = (out / "vocab.txt").read_bytes()
    assert vocab_txt.decode("utf-8") == "".join(t + "\n" for t in vocab)
    assert meta["vocab_sha256"] == hashlib.sha256(vocab_txt).hexdigest()
    assert meta["tokens_sha256"] == hashlib.sha256(np.array(ids, dtype="<u4").tobytes()).hexdigest()
    corpus_bytes = text_corpus.read_bytes()
    assert meta["corpus"] == {"path": str(text_corpus.resolve()), "sha256": hashlib.sha256(corpus_bytes).hexdigest(),
                              "bytes": len(corpus_bytes)}
    # files of the documented layout, and nothing else
    expected_files = {"meta.json", "vocab.txt", "vocab.marisa", "tokens.npy"}
    expected_files |= {f"counts/{m}.{a}.npy" for m in (1, 2, 3, 4) for a in ARRAYS}
    assert set(all_files(out)) == expected_files
    tokens = np.load(out / "tokens.npy")
    assert tokens.dtype == np.uint32 and tokens.tolist() == ids
    for m in (1, 2, 3, 4):
        words_m = np.load(out / "counts" / f"{m}.words.npy")
        assert words_m.dtype == np.uint32 and len(words_m) == len(counts[m])
        assert len(np.load(out / "counts" / f"{m}.offsets.npy")) == (2 if m == 1 else len(counts[m - 1]) + 1)


def test_loaded_model_counts_match_reference(text_corpus, tmp_path):
    model = NgramModel(build_model(text_corpus, tmp_path / "model", order=3))
    words = tokenize_file(text_corpus)
    assert model.vocab.tokens == vocabulary(words)
    ids = [model.vocab.id(w) for w in words]
    assert model.tokens().tolist() == ids
    assert model.order == 3 and model.tables.order == 3 and model.tables.vocab_size == len(model.vocab)
    counts = all_ngram_counts(ids, 3)
    for m in (1, 2, 3):
        for ngram, count in list(counts[m].items())[:300]:
            assert model.tables.count(list(ngram)) == count
    # unseen n-grams: <unk> never occurs in this corpus
    assert model.tables.count([model.vocab.unk_id]) == 0
    assert model.tables.ngram_id([model.vocab.unk_id, 0]) is None


def test_min_count_and_max_vocab_reach_meta(text_corpus, tmp_path):
    from corpora import WordTokenizer
    from functools import partial

    out = build_model(text_corpus, tmp_path / "m", order=2,
                      tokenize=partial(WordTokenizer.train, min_count=2, max_size=50))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tokenizer"] == {"kind": "word", "min_count": 2, "max_size": 50}
    words = tokenize_file(text_corpus)
    assert NgramModel(out).vocab.tokens == vocabulary(words, 2, 50)
    assert meta["vocab_size"] == len(vocabulary(words, 2, 50)) <= 50


def test_same_input_gives_identical_directories(text_corpus, tmp_path):
    a = build_model(text_corpus, tmp_path / "a", order=3)
    b = build_model(text_corpus, tmp_path / "b", order=3)
    files_a, files_b = all_files(a), all_files(b)
    assert files_a.keys() == files_b.keys()
    for name in files_a:
        assert files_a[name] == files_b[name], name
    # and building again in place gives the same bytes too
    build_model(text_corpus, tmp_path / "a", order=3)
    assert all_files(a) == files_b


def test_rebuild_replaces_the_model(text_corpus, write_corpus, tmp_path):
    out = tmp_path / "model"
    build_model(text_corpus, out, order=4)
    other = write_corpus("x y\nx z\n", "other.txt")
    build_model(other, out, order=2)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["order"] == 2 and meta["n_tokens"] == 6
    # nothing of the old model survives: no order 3/4 tables, no stale files
    assert set(all_files(out)) == {"meta.json", "vocab.txt", "vocab.marisa", "tokens.npy"} | {
        f"counts/{m}.{a}.npy" for m in (1, 2) for a in ARRAYS}
    assert NgramModel(out).vocab.tokens == vocabulary(["x", "y", "<eos>", "x", "z", "<eos>"])
    # no temporary or old directories next to it
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt", "model", "other.txt"]


@pytest.mark.parametrize("kind", ["directory with a file", "empty directory", "regular file"])
def test_refuses_to_overwrite_something_else(text_corpus, tmp_path, kind):
    out = tmp_path / "precious"
    if kind == "regular file":
        out.write_text("keep me")
    else:
        out.mkdir()
        if kind == "directory with a file":
            (out / "notes.txt").write_text("keep me")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(NgteachError, match="precious"):
        build_model(text_corpus, out, order=2)
    assert sorted(os.listdir(tmp_path)) == before
    if kind == "regular file":
        assert out.read_text() == "keep me"
    elif kind == "directory with a file":
        assert os.listdir(out) == ["notes.txt"]


def test_bad_order_and_missing_parent(text_corpus, tmp_path):
    from ngram_teacher.model import MAX_ORDER

    for order in (0, -1, MAX_ORDER + 1, 256):
        with pytest.raises(NgteachError, match="order"):
            build_model(text_corpus, tmp_path / "m", order=order)
    with pytest.raises(NgteachError, match="nowhere"):
        build_model(text_corpus, tmp_path / "nowhere" / "m", order=2)
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]


@pytest.mark.parametrize("content", [b"", b"ok\n\xff\xfe\n", b"text\x00more\n"], ids=["empty", "utf8", "binary"])
def test_failed_build_leaves_nothing_behind(write_corpus, tmp_path, content):
    corpus = write_corpus(content, "bad.txt")
    with pytest.raises(NgteachError, match="bad.txt"):
        build_model(corpus, tmp_path / "model", order=3)
    assert os.listdir(tmp_path) == ["bad.txt"]


def test_failure_while_counting_leaves_nothing_behind(text_corpus, tmp_path):
    def stop(m):
        if m == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_model(text_corpus, tmp_path / "model", order=3, on_order=stop)
    assert os.listdir(tmp_path) == ["corpus.txt"]
    # an existing model stays as it was when a rebuild fails
    good = build_model(text_corpus, tmp_path / "model", order=3)
    before = all_files(good)
    with pytest.raises(KeyboardInterrupt):
        build_model(text_corpus, good, order=3, on_order=stop)
    assert all_files(good) == before
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt", "model"]


def test_progress_callbacks(text_corpus, tmp_path):
    seen_bytes, seen_orders = [], []
    build_model(text_corpus, tmp_path / "m", order=3, on_bytes=seen_bytes.append, on_order=seen_orders.append)
    assert sum(seen_bytes) == text_corpus.stat().st_size
    assert seen_orders == [1, 2, 3]


# ---- loading damaged models --------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    corpus = root / "c.txt"
    corpus.write_text("a b c\na b d\na b c\nthe end\n", encoding="utf-8")
    return build_model(corpus, root / "model", order=3)


def damaged_copy(built_model: Path, tmp_path: Path, damage) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(built_model, copy)
    damage(copy)
    return copy


def truncate(path: Path, keep: int | None = None):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


def edit_meta(change):
    def damage(directory: Path):
        meta = json.loads((directory / "meta.json").read_text())
        change(meta)
        (directory / "meta.json").write_text(json.dumps(meta))
    return damage


DAMAGES = {
    "counts file deleted": lambda d: (d / "counts" / "2.words.npy").unlink(),
    "offsets deleted": lambda d: (d / "counts" / "3.offsets.npy").unlink(),
    "counts dir deleted": lambda d: shutil.rmtree(d / "counts"),
    "counts file truncated": lambda d: truncate(d / "counts" / "2.counts.npy"),
    "counts file cut by 4 bytes": lambda d: truncate(d / "counts" / "3.cont_words.npy",
                                                     (d / "counts" / "3.cont_words.npy").stat().st_size - 4),
    "counts file emptied": lambda d: truncate(d / "counts" / "1.words.npy", 0),
    "counts file of other dtype": lambda d: np.save(d / "counts" / "1.counts.npy",
                                                    np.load(d / "counts" / "1.counts.npy").astype(np.int64)),
    "counts of another model": lambda d: np.save(d / "counts" / "2.words.npy", np.arange(3, dtype=np.uint32)),
    "meta.json deleted": lambda d: (d / "meta.json").unlink(),
    "meta.json truncated": lambda d: truncate(d / "meta.json"),
    "meta.json not JSON": lambda d: (d / "meta.json").write_text("order: 3\n"),
    "meta.json not UTF-8": lambda d: (d / "meta.json").write_bytes(b"\xff\xfe{}"),
    "meta.json a list": lambda d: (d / "meta.json").write_text("[]"),
    "meta.json other format": edit_meta(lambda m: m.update(format="something-else")),
    "meta.json format version 2": edit_meta(lambda m: m.update(format_version=2)),
    "meta.json without ngrams": edit_meta(lambda m: m.pop("ngrams")),
    "meta.json without tokenizer": edit_meta(lambda m: m.pop("tokenizer")),
    "meta.json with a higher order": edit_meta(lambda m: m.update(order=4)),
    "meta.json with wrong sizes": edit_meta(lambda m: m["ngrams"].__setitem__(1, m["ngrams"][1] + 1)),
    "meta.json unknown tokenizer": edit_meta(lambda m: m.update(tokenizer={"kind": "bytes"})),
    "vocab.txt deleted": lambda d: (d / "vocab.txt").unlink(),
    "vocab.txt edited": lambda d: (d / "vocab.txt").write_text(
        (d / "vocab.txt").read_text().replace("the\n", "tho\n")),
    "vocab.txt truncated": lambda d: truncate(d / "vocab.txt"),
    "vocab.marisa deleted": lambda d: (d / "vocab.marisa").unlink(),
    "vocab.marisa truncated": lambda d: truncate(d / "vocab.marisa"),
}


def test_the_undamaged_copy_loads(built_model, tmp_path):
    model = NgramModel(damaged_copy(built_model, tmp_path, lambda d: None))
    assert model.tokens().tolist()[:4] == [model.vocab.id(w) for w in ["a", "b", "c", "<eos>"]]


@pytest.mark.parametrize("name", list(DAMAGES))
def test_damaged_model_is_refused(built_model, tmp_path, name):
    directory = damaged_copy(built_model, tmp_path, DAMAGES[name])
    with pytest.raises(NgteachError):
        NgramModel(directory)


def rewrite_array(name: str, change):
    """A damage that applies ``change(array, vocab_size)`` in place to the array in file
    ``name`` and saves it back: right size and dtype, wrong content."""
    def damage(directory: Path):
        array = np.load(directory / name)
        change(array, json.loads((directory / "meta.json").read_text())["vocab_size"])
        np.save(directory / name, array)
    return damage


def set_meta(**fields):
    return edit_meta(lambda m: m.update(fields))


# Damage that used to crash the rank kernel or pass unnoticed -> what the error names.
CORRUPT = {
    "offset past the table": (rewrite_array("counts/2.offsets.npy", lambda a, v: a.__setitem__(3, 4_000_000_000)),
                              "2.offsets.npy"),
    "offsets decreasing": (rewrite_array("counts/2.offsets.npy", lambda a, v: a.__setitem__(1, a[-1])),
                           "2.offsets.npy"),
    "offsets not from 0": (rewrite_array("counts/3.offsets.npy", lambda a, v: a.__setitem__(0, 1)), "3.offsets.npy"),
    "unigram beyond the vocabulary": (rewrite_array("counts/1.words.npy", lambda a, v: a.__setitem__(0, 4_000_000_000)),
                                      "1.words.npy"),
    "word id = vocabulary size": (rewrite_array("counts/2.words.npy", lambda a, v: a.__setitem__(slice(None), v)),
                                  "2.words.npy"),
    "continuation beyond the vocabulary": (rewrite_array("counts/3.cont_words.npy",
                                                         lambda a, v: a.__setitem__(-1, 4_000_000_000)),
                                           "3.cont_words.npy"),
    "n_tokens a string": (set_meta(n_tokens="12"), "'n_tokens'"),
    "vocab_size a float": (set_meta(vocab_size=8.0), "'vocab_size'"),
    "ngrams of strings": (set_meta(ngrams=["7", "9", "10"]), "'ngrams'"),
    "order true": (set_meta(order=True, ngrams=[7]), "'order'"),
    "tokenizer a string": (set_meta(tokenizer="word"), "'tokenizer'"),
    "corpus a string": (set_meta(corpus="c.txt"), "'corpus'"),
    "corpus without bytes": (edit_meta(lambda m: m["corpus"].pop("bytes")), "'corpus'"),
    "checksum a number": (set_meta(vocab_sha256=5), "'vocab_sha256'"),
    "no tool_version": (edit_meta(lambda m: m.pop("tool_version")), "tool_version"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_model_is_refused_naming_the_problem(built_model, tmp_path, name):
    damage, named = CORRUPT[name]
    with pytest.raises(NgteachError, match=named) as refused:
        NgramModel(damaged_copy(built_model, tmp_path, damage))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("damage", ["deleted", "truncated", "emptied", "shortened", "beyond the vocabulary"])
def test_damaged_tokens_npy_is_refused(built_model, tmp_path, damage):
    def do(d: Path):
        path = d / "tokens.npy"
        if damage == "deleted":
            path.unlink()
        elif damage == "truncated":
            truncate(path)
        elif damage == "emptied":
            truncate(path, 0)
        elif damage == "beyond the vocabulary":
            rewrite_array("tokens.npy", lambda a, v: a.__setitem__(5, v))(d)
        else:
            np.save(path, np.load(path)[:-1])

    model = NgramModel(damaged_copy(built_model, tmp_path, do))
    with pytest.raises(NgteachError, match="tokens.npy"):
        model.tokens()


def test_missing_model_directory(tmp_path):
    with pytest.raises(NgteachError, match="nothing-here"):
        NgramModel(tmp_path / "nothing-here")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NgteachError):
        NgramModel(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NgteachError, match="meta.json"):
        NgramModel(tmp_path / "empty")


def test_unk_in_built_vocabulary(built_model):
    assert UNK in NgramModel(built_model).vocab.tokens
