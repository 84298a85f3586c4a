"""The sentencepiece tokenizer, checked against sentencepiece itself and against the
word tokenizer's line convention."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from corpora import NgteachError, Vocabulary, WordTokenizer, load_tokenizer
from corpora import subword, text
from corpora.subword import MODEL_FILE, SentencePieceTokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
SHAKESPEARE = SHARED / "tinyshakespeare" / "input.txt"
pytestmark = pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="no shared corpus mirror")

LINES = 3000
VOCAB = 400


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The first few thousand lines of Tiny Shakespeare."""
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    with open(SHAKESPEARE, encoding="utf-8") as f:
        path.write_text("".join(next(f) for _ in range(LINES)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus) -> tuple[SentencePieceTokenizer, np.ndarray]:
    return SentencePieceTokenizer.train(corpus, VOCAB)


def processor(tokenizer: SentencePieceTokenizer, tmp_path: Path) -> spm.SentencePieceProcessor:
    """Sentencepiece's own processor for the model as saved on disk."""
    tokenizer.save(tmp_path)
    return spm.SentencePieceProcessor(model_file=str(tmp_path / MODEL_FILE))


def split_at_eos(ids: np.ndarray, eos: int) -> list[np.ndarray]:
    """The ids of each line, without its eos; the stream must end with eos."""
    assert ids[-1] == eos
    return np.split(ids, np.flatnonzero(ids == eos) + 1)[:-1]


def test_training_is_deterministic(corpus, trained, tmp_path):
    tokenizer, ids = trained
    again, ids_again = SentencePieceTokenizer.train(corpus, VOCAB)
    for name, tok in [("a", tokenizer), ("b", again)]:
        (tmp_path / name).mkdir()
        tok.save(tmp_path / name)
    assert (tmp_path / "a" / MODEL_FILE).read_bytes() == (tmp_path / "b" / MODEL_FILE).read_bytes()
    assert again.config() == tokenizer.config()
    np.testing.assert_array_equal(ids_again, ids)


def test_config(trained, tmp_path):
    tokenizer, _ = trained
    config = tokenizer.config()
    tokenizer.save(tmp_path)
    assert config == {
        "kind": "sentencepiece",
        "vocab_size": VOCAB,
        "model": MODEL_FILE,
        "model_type": "unigram",
        "sha256": hashlib.sha256((tmp_path / MODEL_FILE).read_bytes()).hexdigest(),
    }


def test_vocabulary_is_sentencepiece_id_order(trained, tmp_path):
    tokenizer, _ = trained
    sp = processor(tokenizer, tmp_path)
    assert tokenizer.vocab.tokens == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert tokenizer.vocab.unk_id == sp.unk_id() == 0
    assert tokenizer.vocab.eos_id == sp.eos_id() == 1
    assert sp.bos_id() == sp.pad_id() == -1


def test_decoding_gives_back_the_lines(corpus, trained, tmp_path):
    tokenizer, ids = trained
    assert ids.dtype == np.uint32
    sp = processor(tokenizer, tmp_path)
    lines = corpus.read_text(encoding="utf-8").split("\n")[:-1]
    pieces = split_at_eos(ids, tokenizer.vocab.eos_id)
    assert len(pieces) == len(lines) == LINES
    decoded = [sp.decode(p.tolist()) for p in pieces]
    # Sentencepiece's normalization trims and collapses spaces (two lines end in spaces).
    assert decoded == [" ".join(line.split()) for line in lines]
    assert not np.isin(ids, [tokenizer.vocab.unk_id]).any()


def test_one_eos_per_line_like_the_word_tokenizer(trained, tmp_path, monkeypatch):
    tokenizer, _ = trained
    path = tmp_path / "lines.txt"
    lines = ["First Citizen:", "", "Before we proceed any further, hear me speak.", "", "", "All: Speak, speak."]
    path.write_text("\r\n".join(lines), encoding="utf-8")  # CRLF, and no final line end
    # Small blocks and batches, so lines cross both boundaries.
    monkeypatch.setattr(text, "BLOCK_BYTES", 16)
    monkeypatch.setattr(subword, "_ENCODE_BATCH_LINES", 2)
    received: list[int] = []
    ids = tokenizer.encode_file(path, on_bytes=received.append)
    eos = tokenizer.vocab.eos_id
    expected = np.concatenate([np.append(tokenizer.encode_text(line), eos) for line in lines]).astype(np.uint32)
    np.testing.assert_array_equal(ids, expected)
    assert sum(received) == path.stat().st_size
    words = WordTokenizer.train(path)[0]
    assert np.count_nonzero(ids == eos) == np.count_nonzero(words.encode_file(path) == words.vocab.eos_id)


def test_encode_text_adds_no_eos(trained, tmp_path):
    tokenizer, _ = trained
    sp = processor(tokenizer, tmp_path)
    ids = tokenizer.encode_text("Speak, speak.")
    assert ids.dtype == np.uint32
    assert ids.tolist() == sp.encode("Speak, speak.")
    assert tokenizer.vocab.eos_id not in ids.tolist()


def test_save_and_load_round_trip(corpus, trained, tmp_path):
    tokenizer, ids = trained
    tokenizer.save(tmp_path)
    assert Vocabulary.load(tmp_path).tokens == tokenizer.vocab.tokens
    loaded = load_tokenizer(tmp_path, tokenizer.config())
    assert isinstance(loaded, SentencePieceTokenizer)
    assert loaded.vocab.tokens == tokenizer.vocab.tokens
    assert loaded.config() == tokenizer.config()
    np.testing.assert_array_equal(loaded.encode_file(corpus), ids)


def test_load_refuses_a_different_model(trained, tmp_path):
    tokenizer, _ = trained
    tokenizer.save(tmp_path)
    config = {**tokenizer.config(), "sha256": "0" * 64}
    with pytest.raises(NgteachError, match="not the model meta.json names"):
        SentencePieceTokenizer.load(tmp_path, config)


def test_load_refuses_a_model_name_that_is_no_string(tmp_path):
    with pytest.raises(NgteachError, match="meta.json: the tokenizer's 'model' must be a file name"):
        SentencePieceTokenizer.load(tmp_path, {"kind": "sentencepiece", "model": 5})


def test_bpe_model_type_is_recorded(corpus, tmp_path):
    tokenizer, _ = SentencePieceTokenizer.train(corpus, VOCAB, model_type="bpe")
    assert tokenizer.config()["model_type"] == "bpe"
    tokenizer.save(tmp_path)
    assert SentencePieceTokenizer.from_model(tmp_path / MODEL_FILE).config() == tokenizer.config()


def test_from_model_of_a_plain_sentencepiece_model(corpus, tmp_path):
    """A model trained elsewhere keeps its ids; its eos piece ("</s>") is <eos> to us."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_writer=model, vocab_size=VOCAB, character_coverage=1.0, minloglevel=2
    )
    (tmp_path / "plain.model").write_bytes(model.getvalue())
    tokenizer = SentencePieceTokenizer.from_model(tmp_path / "plain.model")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "plain.model"))
    assert sp.id_to_piece(sp.eos_id()) == "</s>"
    assert tokenizer.vocab.eos_id == sp.eos_id() and tokenizer.vocab.unk_id == sp.unk_id()
    ids = tokenizer.encode_file(corpus)
    assert np.count_nonzero(ids == sp.eos_id()) == LINES


def test_output_is_silent(corpus, capfd):
    SentencePieceTokenizer.train(corpus, VOCAB)
    with pytest.raises(NgteachError):
        SentencePieceTokenizer.train(corpus, 100_000)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize(
    "vocab_size, model_type, message",
    [
        (100_000, "unigram", r"sentencepiece training failed: Vocabulary size too high \(100000\)"),
        (20, "unigram", "sentencepiece training failed: Vocabulary size is smaller than required_chars"),
        (2, "unigram", "vocab_size must be at least 3"),
        (VOCAB, "wordpiece", "unknown sentencepiece model type 'wordpiece'"),
    ],
)
def test_training_errors_are_one_line(corpus, vocab_size, model_type, message):
    with pytest.raises(NgteachError, match=message) as error:
        SentencePieceTokenizer.train(corpus, vocab_size, model_type)
    assert "\n" not in str(error.value)


def test_training_on_bad_corpora(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n\n")
    with pytest.raises(NgteachError, match="no text to train on"):
        SentencePieceTokenizer.train(blank, VOCAB)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"plain text\n" * 10 + b"caf\xe9\n")
    with pytest.raises(NgteachError, match=r"latin1.txt: not UTF-8 text \(byte 0xe9 at offset 113\)"):
        SentencePieceTokenizer.train(latin1, VOCAB)
    with pytest.raises(NgteachError, match="no such file"):
        SentencePieceTokenizer.train(tmp_path / "missing.txt", VOCAB)


def test_from_model_errors(corpus, tmp_path):
    with pytest.raises(NgteachError, match=r"missing.model: no such file"):
        SentencePieceTokenizer.from_model(tmp_path / "missing.model")
    for name, data in [("empty.model", b""), ("text.model", b"this is not a model\n")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(NgteachError, match=f"{name}: not a sentencepiece model"):
            SentencePieceTokenizer.from_model(tmp_path / name)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_writer=model, vocab_size=VOCAB, eos_id=-1, minloglevel=2
    )
    (tmp_path / "no-eos.model").write_bytes(model.getvalue())
    with pytest.raises(NgteachError, match="no-eos.model: the sentencepiece model has no eos piece"):
        SentencePieceTokenizer.from_model(tmp_path / "no-eos.model")
