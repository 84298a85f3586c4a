"""Teachers as one interface: specs, declared partitions, and rows for a batch equal to a
ranks file's rows; a student learning online learns what it learns from the file."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import student  # noqa: F401  (the neural teachers' specs)
from conftest import head_lines
from corpora import NgteachError
from ngram_teacher import (ArpaTeacher, CountTeacher, NgramModel, RankFile, build_model, load_teacher,
                           teacher_rows, write_ranks)
from ngram_teacher.arpa import write_arpa
from ngram_teacher.kneser_ney import estimate_kneser_ney
from ngram_teacher.teachers import parse_teacher_spec
from student.data import FileRows, OnlineRows, TeacherReader
from student.model import student_config
from student.neural_teachers import NeuralTeacher
from student.train import RunConfig, run


@pytest.fixture(scope="module")
def models(tmp_path_factory, request):
    """A 3-gram count model of 4,000 tokens of WikiText-2, its order-1 twin (the same
    vocabulary), its Kneser-Ney ARPA file, and a second text in that vocabulary."""
    from conftest import WT2_TEST, WT2_VALID, shared_corpus

    root = tmp_path_factory.mktemp("teachers")
    (root / "train.txt").write_text(head_lines(shared_corpus(WT2_VALID), 4000), encoding="utf-8")
    (root / "other.txt").write_text(head_lines(shared_corpus(WT2_TEST), 1500), encoding="utf-8")
    build_model(root / "train.txt", root / "counts", order=3)
    build_model(root / "train.txt", root / "base", order=1)
    write_arpa(estimate_kneser_ney(NgramModel(root / "counts"), 3), root / "kn.arpa")
    return root


def file_rows(teacher, stream: np.ndarray, k: int, gt_first: bool, path: Path) -> RankFile:
    write_ranks(teacher, stream, path, k, gt_first, with_scores=True)
    return RankFile(path)


@pytest.mark.parametrize("kind", ["count", "arpa"])
@pytest.mark.parametrize("gt_first", [True, False])
def test_rows_of_any_positions_are_the_files_rows(models, kind, gt_first, tmp_path):
    base = NgramModel(models / "base")
    spec = f"count:{models / 'counts'}" if kind == "count" else f"arpa:{models / 'kn.arpa'}"
    teacher = load_teacher(spec, base, 9)
    for name, stream in (("own", base.tokens()), ("other", base.tokenizer.encode_file(models / "other.txt"))):
        ranks = file_rows(teacher, stream, 9, gt_first, tmp_path / f"{name}.bin")
        rng = np.random.default_rng(3)
        # a batch as training reads it (columns of consecutive positions), repeats, the stream's ends
        positions = np.concatenate([np.arange(start, start + 35) for start in rng.integers(0, len(stream) - 35, 8)]
                                   + [[0, 1, len(stream) - 1, 5, 5], rng.integers(0, len(stream), 50)])
        rows = teacher_rows(teacher, stream, positions, 9, gt_first)
        assert rows.ids.dtype == ranks.ids.dtype and rows.scores.dtype == ranks.scores.dtype
        assert np.array_equal(rows.ids, ranks.ids[positions])
        assert np.array_equal(rows.orders, ranks.orders[positions])
        assert np.array_equal(rows.scores, ranks.scores[positions])


def test_teachers_declare_their_partitions(models, tmp_path):
    base = NgramModel(models / "base")
    count = file_rows(CountTeacher(NgramModel(models / "counts")), base.tokens(), 5, True, tmp_path / "c.bin")
    arpa = file_rows(load_teacher(f"arpa:{models / 'kn.arpa'}", base, 5), base.tokens(), 5, True, tmp_path / "a.bin")
    assert count.header["teacher"]["partition"] == "order" and arpa.header["teacher"]["partition"] == "strict"
    positions = torch.arange(100, 110).view(2, 5)
    assert TeacherReader(count).partition == "order" and TeacherReader(count).rows(positions).partitions is not None
    assert TeacherReader(arpa).partition == "strict" and TeacherReader(arpa).rows(positions).partitions is None
    assert TeacherReader(arpa, partition="order").rows(positions).partitions is not None  # an explicit choice wins
    # a ranks file made before teachers declared their partitions keeps the meaning of then: by order
    legacy = FileRows(arpa)
    legacy.description = {key: value for key, value in legacy.description.items() if key != "partition"}
    assert TeacherReader(legacy).partition == "order"


def test_teacher_specs(models):
    base = NgramModel(models / "base")
    assert isinstance(load_teacher(f"arpa:{models / 'kn.arpa'}", base, 4), ArpaTeacher)
    counts = load_teacher(f"count:{models / 'counts'}", base, 4)
    assert isinstance(counts, CountTeacher) and counts.order == 3
    assert parse_teacher_spec("born-again:runs/x") == ("born-again", Path("runs/x"))
    for spec, says in (("counts", "--teacher must be KIND:PATH with KIND one of count, arpa, cloze, infini, kn-loo, born-again, "
                                  "hf-causal, hf-masked, not 'counts'"),
                       ("arpa:", "--teacher must be KIND:PATH"),
                       (f"arpa:{models / 'none.arpa'}", "none.arpa: no such ARPA file"),
                       (f"count:{models / 'nothing'}", "nothing: no such model directory")):
        with pytest.raises(NgteachError, match=says):
            load_teacher(spec, base, 4)
    (models / "small.txt").write_text("a b c\n", encoding="utf-8")
    build_model(models / "small.txt", models / "small", order=2)
    with pytest.raises(NgteachError, match="its vocabulary is not that of"):
        load_teacher(f"count:{models / 'small'}", base, 4)


def test_a_neural_teacher_ranks_to_a_file_only(models):
    base = NgramModel(models / "base")
    neural = NeuralTeacher(base, {"kind": "born-again"}, lambda stream, k: iter(()))
    assert neural.describe()["partition"] == "strict" and not neural.online
    with pytest.raises(NgteachError, match="born-again:RUN: this teacher ranks to a file only"):
        OnlineRows(neural, base.tokens(), 5, "born-again:RUN")


def tiny(models: Path, out: Path, loss: str = "rank", **changes) -> RunConfig:
    # The loss goes to the constructor so that its default weight and smoothing apply.
    config = RunConfig(model_dir=str(models / "base"), student=student_config("lstm", "tiny", window=20),
                       loss=loss, epochs=2, batch_size=8, patience=9, out=str(out))
    return replace(config, **changes)


@pytest.mark.parametrize("loss, kind", [("rank", "count"), ("kl", "arpa"), ("rank", "arpa")])
def test_online_and_file_teachers_train_the_same_student(models, tmp_path, loss, kind):
    base = NgramModel(models / "base")
    spec = f"count:{models / 'counts'}" if kind == "count" else f"arpa:{models / 'kn.arpa'}"
    write_ranks(load_teacher(spec, base, 20), base.tokens(), tmp_path / "ranks.bin", 20, with_scores=True)
    online = run(tiny(models, tmp_path / "online", loss=loss, teacher=spec), log=lambda m: None)
    from_file = run(tiny(models, tmp_path / "file", loss=loss, ranks=str(tmp_path / "ranks.bin")), log=lambda m: None)
    assert online["valid_ppl"] == from_file["valid_ppl"]
    metrics = [[{k: v for k, v in json.loads(line).items() if k not in ("tokens_per_s", "wall_s")}
                for line in (tmp_path / run_dir / "metrics.jsonl").read_text().splitlines()]
               for run_dir in ("online", "file")]
    assert metrics[0] == metrics[1]
    configs = [json.loads((tmp_path / d / "config.json").read_text()) for d in ("online", "file")]
    assert configs[0]["partition"] == configs[1]["partition"] == ("order" if kind == "count" else "strict")


def test_train_on_another_text_in_the_models_vocabulary(models, tmp_path):
    """A teacher counted on one text teaches a student that reads another: online, or from
    the ranks of that text (rank --corpus), the same."""
    base = NgramModel(models / "base")
    other = base.tokenizer.encode_file(models / "other.txt")
    spec = f"count:{models / 'counts'}"
    write_ranks(load_teacher(spec, base, 20), other, tmp_path / "other.bin", 20)
    online = run(tiny(models, tmp_path / "online", loss="rank", teacher=spec, train=str(models / "other.txt")),
                 log=lambda m: None)
    from_file = run(tiny(models, tmp_path / "file", loss="rank", ranks=str(tmp_path / "other.bin"),
                         train=str(models / "other.txt")), log=lambda m: None)
    assert online["valid_ppl"] == from_file["valid_ppl"]
    assert online["train_tokens"] / online["epochs"] < len(other) * 0.9  # the text's tokens, less the validation tail
    write_ranks(load_teacher(spec, base, 20), base.tokens(), tmp_path / "own.bin", 20)
    with pytest.raises(NgteachError, match="own.bin: ranks a different token stream than .*other.txt in the vocabulary "
                                           "of .*base \\(ngteach rank --corpus"):
        run(tiny(models, tmp_path / "wrong", loss="rank", ranks=str(tmp_path / "own.bin"),
                 train=str(models / "other.txt")), log=lambda m: None)
    assert not (tmp_path / "wrong").exists()


def test_rows_made_ahead_in_a_worker_are_the_rows_in_order(models):
    """What a GPU run does with an online teacher: the next batch's rows are made while one trains."""
    from student.data import bptt_batches
    from student.train import _teacher_rows

    base = NgramModel(models / "base")
    reader = TeacherReader(OnlineRows(load_teacher(f"arpa:{models / 'kn.arpa'}", base, 6), base.tokens(), 6, "kn"))
    batches = list(bptt_batches(torch.from_numpy(base.tokens().astype(np.int64)), 4, 10))[:7]
    for ahead, plain in zip(_teacher_rows(reader, batches, True), _teacher_rows(reader, batches, False)):
        assert torch.equal(ahead.ranks, plain.ranks) and torch.equal(ahead.logprobs, plain.logprobs)
    assert len(list(_teacher_rows(reader, batches, True))) == len(batches)
    assert list(_teacher_rows(None, batches, True)) == [None] * len(batches)
