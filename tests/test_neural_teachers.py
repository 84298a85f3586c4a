"""Neural teachers (born-again, hf-causal, hf-masked): ranks against brute-force references
on tiny models, the file's layout and header, and the command line's errors. Nothing is
downloaded: the Hugging Face models are random, with tokenizers trained here."""
from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from corpora.builtin import python_docs_splits
from ngram_teacher import NgramModel, RankFile, build_model
from ngteach.cli import main
from student import neural_teachers
from student.model import build_student, student_config
from ngram_teacher import load_teacher, write_ranks
from student.train import RunConfig, load_checkpoint, run, token_logprobs

K = 6

pytestmark = pytest.mark.slow  # students and transformers as teachers: the slow part of the suite


def ngteach(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code


# ---- born-again ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def born_again(tmp_path_factory):
    """A model on 300 lines of Python's documentation and a tiny LSTM trained 1 epoch on it."""
    root = tmp_path_factory.mktemp("born_again")
    (root / "train.txt").write_text("\n".join(python_docs_splits()["train"].split("\n")[:300]) + "\n",
                                    encoding="utf-8")
    build_model(root / "train.txt", root / "model", order=3)
    config = RunConfig(model_dir=str(root / "model"), student=student_config("lstm", "tiny", window=20),
                       loss="ce", epochs=1, batch_size=8, out=str(root / "run"))
    run(config, log=lambda line: None)
    return root


def reference_logprobs(run_dir: Path, stream: np.ndarray, columns: int) -> np.ndarray:
    """Full-softmax rows [n, V] computed as token_logprobs reads a text: one column at a time."""
    config = RunConfig.load(run_dir / "config.json")
    model = NgramModel(config.model_dir)
    student = build_student(config.student, len(model.vocab))
    student.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "best.pt")["model"])
    student.eval()
    padded = torch.cat([torch.tensor([model.vocab.eos_id]), torch.from_numpy(stream.astype(np.int64))])
    per_column, rows = -(-len(stream) // columns), []
    with torch.no_grad():
        for lo in range(0, len(stream), per_column):
            state = None
            for start in range(lo, min(lo + per_column, len(stream)), config.student.window):
                stop = min(start + config.student.window, lo + per_column, len(stream))
                logits, state = student(padded[start:stop][None], state)
                rows.append(logits[0].log_softmax(-1))
    return torch.cat(rows).numpy()


def test_born_again_ranks_are_the_students_top_k_with_the_truth_first(born_again, tmp_path):
    model = NgramModel(born_again / "model")
    stream = np.asarray(model.tokens())
    teacher = load_teacher(f"born-again:{born_again / 'run'}", model, device=torch.device("cpu"))
    write_ranks(teacher, stream, tmp_path / "ranks.bin", K, with_scores=True)
    ranks = RankFile(tmp_path / "ranks.bin")
    expected = reference_logprobs(born_again / "run", stream, teacher.description["columns"])
    truth = expected[np.arange(len(stream)), stream]
    assert np.array_equal(ranks.ids[:, 0], stream)
    np.testing.assert_allclose(ranks.scores[:, 0], truth, atol=1e-5)
    others = expected.copy()
    others[np.arange(len(stream)), stream] = -np.inf
    best = np.argsort(-others, axis=1, kind="stable")[:, :K - 1]
    np.testing.assert_allclose(ranks.scores[:, 1:], np.take_along_axis(others, best, 1), atol=1e-5)
    assert (np.asarray(ranks.ids[:, 1:]) == best).mean() > 0.999  # float ties may swap
    assert (np.asarray(ranks.orders) == 1).all()
    assert ranks.header["teacher"]["kind"] == "born-again"
    assert ranks.header["scores"] == {"kind": "logprob", "dtype": "<f4"}
    # the truth's score is what evaluation gives it (same columns and windows)
    config = RunConfig.load(born_again / "run" / "config.json")
    student = build_student(config.student, len(model.vocab))
    student.load_state_dict(load_checkpoint(born_again / "run" / "checkpoints" / "best.pt")["model"])
    evaluated = token_logprobs(student, torch.from_numpy(stream.astype(np.int64)), model.vocab.eos_id,
                               teacher.description["columns"], config.student.window, torch.device("cpu"))
    np.testing.assert_allclose(ranks.scores[:, 0], evaluated, atol=1e-5)


def test_born_again_without_gt_first_is_the_plain_top_k(born_again, tmp_path):
    model = NgramModel(born_again / "model")
    stream = np.asarray(model.tokens())[:500]
    teacher = load_teacher(f"born-again:{born_again / 'run'}", model, device=torch.device("cpu"))
    write_ranks(teacher, stream, tmp_path / "ranks.bin", K, gt_first=False, with_scores=False)
    ranks = RankFile(tmp_path / "ranks.bin")
    expected = reference_logprobs(born_again / "run", stream, teacher.description["columns"])
    assert (np.asarray(ranks.ids) == np.argsort(-expected, axis=1, kind="stable")[:, :K]).mean() > 0.999
    assert ranks.scores is None and not ranks.header["gt_first"]


def test_distill_with_kl_from_born_again_ranks(born_again, tmp_path):
    ranks = tmp_path / "ranks.bin"
    assert ngteach("rank", "--teacher", f"born-again:{born_again / 'run'}", "--model", str(born_again / "model"),
                   "--k", str(K), "--scores", "-o", str(ranks)) == 0
    assert ngteach("distill", "--student", "lstm", "--size", "tiny", "--loss", "kl", "--epochs", "1",
                   "--model", str(born_again / "model"), "--ranks", str(ranks), "--out", str(tmp_path / "kl")) == 0
    assert json.loads((tmp_path / "kl" / "summary.json").read_text())["valid_ppl"] > 1


def test_born_again_refuses_another_vocabulary(born_again, tmp_path, capsys):
    (tmp_path / "other.txt").write_text("a b c\n", encoding="utf-8")
    build_model(tmp_path / "other.txt", tmp_path / "other", order=2)
    code = ngteach("rank", "--teacher", f"born-again:{born_again / 'run'}", "--model", str(tmp_path / "other"),
                   "-o", str(tmp_path / "r.bin"))
    error = capsys.readouterr().err.strip()
    assert code == 1 and error.startswith("ngteach: error: ") and "vocabulary" in error and "\n" not in error


def test_born_again_checks_the_recorded_vocabulary_and_the_weights(born_again, tmp_path, capsys):
    def moved(name: str, **changes) -> Path:
        shutil.copytree(born_again / "run", tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        (tmp_path / name / "config.json").write_text(json.dumps({**config, **changes}))
        return tmp_path / name

    model = NgramModel(born_again / "model")
    # the recorded vocabulary is the ranked model's: the run's own model directory is not needed
    teacher = load_teacher(f"born-again:{moved('recorded', model_dir='gone')}", model, device=torch.device("cpu"))
    assert teacher.description["kind"] == "born-again"
    for name, changes, says in [
            ("older", {"model_dir": "gone", "vocab_sha256": None}, "older: the run's model directory gone is missing "
                                                                   "(the path is relative to the folder the run"),
            ("narrow", {"student": {**json.loads((born_again / "run" / "config.json").read_text())["student"],
                                    "width": 32, "embedding": 32}}, "best.pt: the weights do not fit")]:
        code = ngteach("rank", "--teacher", f"born-again:{moved(name, **changes)}", "--model",
                       str(born_again / "model"), "-o", str(tmp_path / "r.bin"))
        error = capsys.readouterr().err.strip()
        assert code == 1 and error.startswith("ngteach: error: ") and says in error and "\n" not in error
        assert not (tmp_path / "r.bin").exists()


# ---- Hugging Face teachers -------------------------------------------------------------------

try:  # the optional extra: without it only the Hugging Face tests are skipped
    import tokenizers
    import transformers
except ImportError:
    transformers = tokenizers = None


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Tiny random GPT-2 and BERT with tokenizers trained on shared text, saved as local
    model directories, and a word-level target model of a few lines of the same text."""
    from conftest import WT2_VALID, shared_corpus

    if transformers is None:
        pytest.skip("the optional 'transformers' package is not installed")
    root = tmp_path_factory.mktemp("hf")
    lines = [line for line in shared_corpus(WT2_VALID).read_text(encoding="utf-8").split("\n")[:300] if line.strip()]
    torch.manual_seed(0)
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines, vocab_size=400, special_tokens=["<|endoftext|>"])
    gpt_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                                         eos_token="<|endoftext|>")
    gpt = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=len(gpt_tokenizer), n_positions=256,
                                                               n_layer=1, n_embd=32, n_head=2))
    gpt.save_pretrained(root / "gpt2")
    gpt_tokenizer.save_pretrained(root / "gpt2")
    wordpiece = tokenizers.BertWordPieceTokenizer()
    wordpiece.train_from_iterator(lines, vocab_size=400)
    bert_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]",
                                                          cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                                          mask_token="[MASK]")
    bert = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512))
    bert.save_pretrained(root / "bert")
    bert_tokenizer.save_pretrained(root / "bert")
    (root / "target.txt").write_text("\n".join(lines[:12]) + "\n", encoding="utf-8")
    build_model(root / "target.txt", root / "model", order=2)
    return root


def causal_pieces(teacher_dir: Path, model: NgramModel) -> list[list[int]]:
    """The teacher's pieces of every vocabulary word: after a space, <eos> a line break."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True)
    return [tokenizer.encode("\n" if word == "<eos>" else " " + word) for word in model.vocab.tokens]


def causal_reference(teacher_dir: Path, model: NgramModel, stream: np.ndarray, positions, window: int,
                     stride: int) -> dict[int, np.ndarray]:
    """log p(w | words before i) of every vocabulary word at each of ``positions``, each chained
    piece by piece after exactly that position's context: the start token and the stream's
    pieces, cut to the window that starts at a multiple of ``stride`` and is the first to hold
    the context's last piece."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True)
    network = transformers.AutoModelForCausalLM.from_pretrained(teacher_dir, local_files_only=True).eval()
    words = causal_pieces(teacher_dir, model)
    longest = max(map(len, words))
    expected = {}
    for i in positions:
        context = [tokenizer.bos_token_id] + [p for w in stream[:i] for p in words[w]]
        last = len(context) - 1
        start = 0 if last < window else min(s for s in range(0, last + 1, stride) if s + window > last)
        context = context[start:]
        # one batch of every word after the context, padded on the right (which a causal model ignores)
        batch = torch.tensor([context + word + [0] * (longest - len(word)) for word in words])
        with torch.no_grad():
            logp = network(input_ids=batch).logits.log_softmax(-1)
        expected[i] = np.array([sum(float(logp[w, len(context) - 1 + j, p]) for j, p in enumerate(word))
                                for w, word in enumerate(words)])
    return expected


def assert_causal_ranks(ranks: RankFile, stream: np.ndarray, expected: dict[int, np.ndarray]) -> None:
    """The true word first with its reference score, then the reference's K-1 best others."""
    assert np.array_equal(ranks.ids[:, 0], stream)
    for i, scores in expected.items():
        assert ranks.scores[i, 0] == pytest.approx(scores[stream[i]], abs=1e-4)
        others = scores.copy()
        others[stream[i]] = -np.inf
        best = np.argsort(-others, kind="stable")[:K - 1]
        np.testing.assert_allclose(ranks.scores[i, 1:], others[best], atol=1e-4)
        assert list(ranks.ids[i, 1:]) == list(best)


def test_hf_causal_ranks_are_the_exact_top_k_of_chained_word_probabilities(hf, tmp_path):
    model = NgramModel(hf / "model")
    stream = np.asarray(model.tokens())[:150]  # 412 pieces: three windows of the model's 256 positions
    teacher = load_teacher(f"hf-causal:{hf / 'gpt2'}", model, device=torch.device("cpu"))
    write_ranks(teacher, stream, tmp_path / "ranks.bin", K, with_scores=True)
    ranks = RankFile(tmp_path / "ranks.bin")
    described = ranks.header["teacher"]
    assert described["kind"] == "hf-causal" and described["architecture"] == "GPT2LMHeadModel"
    # the window leaves room in the model's 256 positions for a word's pieces chained after it
    longest = max(map(len, causal_pieces(hf / "gpt2", model)))
    assert described["window_pieces"] == 256 - longest + 1 and described["stride_pieces"] == described[
        "window_pieces"] // 2
    assert_causal_ranks(ranks, stream, causal_reference(hf / "gpt2", model, stream, (0, 1, 7, 75, 120, 149),
                                                        described["window_pieces"], described["stride_pieces"]))


def test_hf_causal_small_windows_and_passes_match_the_reference_everywhere(hf, tmp_path, monkeypatch):
    """Windows of 16 pieces and passes of 40: many windows per stream, several passes of
    chained pieces per window; every position against the reference."""
    monkeypatch.setattr(neural_teachers, "WINDOW_PIECES", 16)
    monkeypatch.setattr(neural_teachers, "PIECES_PER_PASS", 40)
    model = NgramModel(hf / "model")
    stream = np.asarray(model.tokens())[:40]
    teacher = load_teacher(f"hf-causal:{hf / 'gpt2'}", model, device=torch.device("cpu"))
    assert (teacher.description["window_pieces"], teacher.description["stride_pieces"]) == (16, 8)
    write_ranks(teacher, stream, tmp_path / "ranks.bin", K, with_scores=True)
    assert_causal_ranks(RankFile(tmp_path / "ranks.bin"), stream,
                        causal_reference(hf / "gpt2", model, stream, range(len(stream)), 16, 8))


def masked_reference(teacher_dir: Path, model: NgramModel, stream: np.ndarray, i: int) -> np.ndarray:
    """Every word's score with as many masks as it has pieces, one word at a time."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True)
    network = transformers.AutoModelForMaskedLM.from_pretrained(teacher_dir, local_files_only=True).eval()
    pieces = lambda word: (tokenizer.encode(" " + word, add_special_tokens=False)  # noqa: E731
                           if word != "<eos>" else [tokenizer.sep_token_id])
    words = model.vocab.tokens
    left = [p for w in stream[:i] for p in pieces(words[w])][-128:]
    right = [p for w in stream[i + 1:] for p in pieces(words[w])][:128]
    scores = {}
    with torch.no_grad():
        for count in {len(pieces(word)) for word in words}:  # one pass per number of masks
            sequence = [tokenizer.cls_token_id] + left + [tokenizer.mask_token_id] * count + right + [
                tokenizer.sep_token_id]
            logp = network(input_ids=torch.tensor([sequence])).logits[0].log_softmax(-1)
            for w, word in enumerate(words):
                if len(pieces(word)) == count:
                    scores[w] = sum(float(logp[1 + len(left) + j, p]) for j, p in enumerate(pieces(word)))
    return np.array([scores[w] for w in range(len(words))])


def test_hf_masked_ranks_match_a_word_by_word_reference(hf, tmp_path):
    model = NgramModel(hf / "model")
    stream = np.asarray(model.tokens())
    teacher = load_teacher(f"hf-masked:{hf / 'bert'}", model, device=torch.device("cpu"))
    write_ranks(teacher, stream, tmp_path / "ranks.bin", K, gt_first=False, with_scores=True)
    ranks = RankFile(tmp_path / "ranks.bin")
    assert ranks.header["teacher"]["kind"] == "hf-masked"
    for i in (0, 5, len(stream) - 1):
        expected = masked_reference(hf / "bert", model, stream, i)
        best = np.argsort(-expected, kind="stable")[:K]
        np.testing.assert_allclose(ranks.scores[i], expected[best], atol=1e-4)
        assert list(ranks.ids[i]) == list(best)


@pytest.mark.parametrize("spec, says", [
    ("hf-masked:{hf}/gpt2", "not a masked language model"),
    ("hf-causal:{hf}/bert", "not a causal language model"),
    ("hf-causal:{hf}/model", "not a Hugging Face model directory"),
    ("gpt9:{hf}/gpt2", "--teacher must be KIND:PATH"),
])
def test_hf_teacher_errors_are_one_line(hf, tmp_path, capsys, spec, says):
    code = ngteach("rank", "--teacher", spec.format(hf=hf), "--model", str(hf / "model"), "-o", str(tmp_path / "r"))
    error = capsys.readouterr().err.strip()
    assert code == 1 and error.startswith("ngteach: error: ") and says in error and "\n" not in error
    assert not (tmp_path / "r").exists()


def test_missing_transformers_is_one_clear_line(hf, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def without_transformers(name, *args, **kwargs):
        if name.split(".")[0] == "transformers":
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_transformers)
    code = ngteach("rank", "--teacher", f"hf-causal:{hf / 'gpt2'}", "--model", str(hf / "model"),
                   "-o", str(tmp_path / "r"))
    error = capsys.readouterr().err.strip()
    assert code == 1 and error == ("ngteach: error: --teacher hf-causal needs the optional 'transformers' package: "
                                   "pip install ngteach[hf]")
