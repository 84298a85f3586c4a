"""The trainer: batching, the objective, repeatability, resuming after SIGKILL, errors."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corpora import NgteachError
from corpora.builtin import python_docs_splits
from ngram_teacher import NgramModel, RankFile, RankFileWriter, build_model, write_ranks
from student import train
from student.data import GT_PARTITION, TeacherReader, TeacherRows, bptt_batches, window_batches
from student.model import student_config
from student.train import RunConfig, evaluate_run, objective, run

COMMAND = [sys.executable, "-c", "from ngteach.cli import main; main()"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A 4-gram teacher on 1,200 lines of Python's documentation, its ranks, and texts."""
    root = tmp_path_factory.mktemp("teacher")
    splits = python_docs_splits()
    (root / "train.txt").write_text("\n".join(splits["train"].split("\n")[:1200]) + "\n", encoding="utf-8")
    (root / "test.txt").write_text("\n".join(splits["test"].split("\n")[:300]) + "\n", encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    build_model(root / "train.txt", root / "ngteach-model", order=4)
    model = NgramModel(root / "ngteach-model")
    write_ranks(model, model.tokens(), root / "ranks.bin", 8)
    return root


def tiny_config(teacher: Path, out: Path, loss: str = "ce", **changes) -> RunConfig:
    # The loss goes to the constructor so that its default weight and smoothing apply.
    config = RunConfig(model_dir=str(teacher / "ngteach-model"), ranks=str(teacher / "ranks.bin"),
                       test=str(teacher / "test.txt"), student=student_config("lstm", "tiny", window=20),
                       loss=loss, epochs=2, batch_size=8, out=str(out))
    return replace(config, **changes)


# ---- batching -------------------------------------------------------------------------------

def test_bptt_batches_cover_each_target_once_with_its_input():
    stream = torch.arange(1000) * 7 % 13
    seen = []
    for rank in range(2):
        for batch in bptt_batches(stream, 6, 9, rank, 2):
            assert torch.equal(batch.targets, stream[batch.positions])
            assert torch.equal(batch.inputs, stream[batch.positions - 1])
            seen.append(batch.positions.reshape(-1))
    positions = torch.cat(seen).sort().values
    per_column = 999 // 6
    assert torch.equal(positions, torch.arange(1, 6 * per_column + 1))


def test_bptt_batches_are_contiguous_within_a_column():
    stream = torch.arange(100)
    batches = list(bptt_batches(stream, 3, 5))
    # column c continues in the next batch where the previous one stopped
    for before, after in zip(batches, batches[1:]):
        assert torch.equal(after.positions[:, 0], before.positions[:, -1] + 1)


def test_window_batches_shuffle_per_epoch_and_split_between_processes():
    stream = torch.arange(1001)
    epoch1 = [b.positions for r in range(3) for b in window_batches(stream, 4, 10, seed=5, epoch=1, rank=r, world=3)]
    everything = torch.cat([p.reshape(-1) for p in epoch1]).sort().values
    assert torch.equal(everything, torch.arange(1, 1001))
    first = next(window_batches(stream, 4, 10, seed=5, epoch=1)).positions
    again = next(window_batches(stream, 4, 10, seed=5, epoch=1)).positions
    other = next(window_batches(stream, 4, 10, seed=5, epoch=2)).positions
    assert torch.equal(first, again) and not torch.equal(first, other)


# ---- the teacher's rows ---------------------------------------------------------------------

def test_teacher_rows_partitions_and_min_order(teacher):
    ranks = RankFile(teacher / "ranks.bin")
    positions = torch.arange(100, 140).view(4, 10)
    rows = TeacherReader(ranks, k=6, min_order=2, partition="order").rows(positions)
    ids = np.asarray(ranks.ids[100:140, :6]).reshape(4, 10, 6)
    orders = np.asarray(ranks.orders[100:140, :6]).reshape(4, 10, 6)
    expected_mask = (orders >= 2) & (orders > 0)
    expected_mask[..., 0] = True  # the ground truth stays whatever its order
    assert torch.equal(rows.mask, torch.from_numpy(expected_mask))
    assert torch.equal(rows.ranks, torch.from_numpy(np.where(expected_mask, ids, 0).astype(np.int64)))
    assert (rows.partitions[..., 0] == GT_PARTITION).all()
    assert torch.equal(rows.partitions[..., 1:], torch.from_numpy(orders[..., 1:].astype(np.int64)))
    assert rows.gt_first and rows.logprobs is None
    assert TeacherReader(ranks, partition="strict").rows(positions).partitions is None
    single = TeacherReader(ranks, partition="none").rows(positions).partitions
    assert (single[..., 1:] == 1).all() and (single[..., 0] == GT_PARTITION).all()


def test_rank_objective_with_full_weight_is_plackett_luce_and_k1_is_cross_entropy(teacher):
    ranks = RankFile(teacher / "ranks.bin")
    positions = torch.arange(10, 30).view(2, 10)
    logits = torch.randn(2, 10, len(NgramModel(teacher / "ngteach-model").vocab))
    targets = torch.from_numpy(np.asarray(NgramModel(teacher / "ngteach-model").tokens()[positions.numpy()],
                                          dtype=np.int64))
    config = RunConfig(loss="rank", weight=1.0, smoothing=0.0)
    one = TeacherReader(ranks, k=1).rows(positions)
    loss, ce = objective(config, logits, targets, one)
    torch.testing.assert_close(loss, F.cross_entropy(logits.transpose(1, 2), targets, reduction="none"))
    torch.testing.assert_close(ce, loss)
    # weight 0 leaves cross-entropy alone whatever the teacher says
    loss0, _ = objective(replace(config, weight=0.0), logits, targets, TeacherReader(ranks).rows(positions))
    torch.testing.assert_close(loss0, ce)
    # ... label-smoothed by 0.1 when rank's smoothing is left to its default (the other losses': 0)
    smoothed, _ = objective(RunConfig(loss="rank", weight=0.0), logits, targets, TeacherReader(ranks).rows(positions))
    torch.testing.assert_close(smoothed, F.cross_entropy(logits.transpose(1, 2), targets, reduction="none",
                                                         label_smoothing=0.1))
    assert [RunConfig(loss=loss).smoothing for loss in ("rank", "pl", "kl", "ce", "ls")] == [0.1, 0, 0, 0, 0]


@pytest.mark.parametrize("loss, weight", [("ce", 0.0), ("ls", 0.1), ("ls", 0.3)])
def test_ce_and_label_smoothing_objectives_match_torch(loss, weight):
    logits = torch.randn(3, 7, 50, dtype=torch.float64).float()
    targets = torch.randint(0, 50, (3, 7))
    value, ce = objective(RunConfig(loss=loss, weight=weight), logits, targets, None)
    expected = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", label_smoothing=weight)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(ce, F.cross_entropy(logits.transpose(1, 2), targets, reduction="none"))


@pytest.mark.parametrize("k", [1, 8])  # ground truth alone / followed by the teacher's ranking
def test_smoothing_label_smooths_the_cross_entropy_term_of_rank(teacher, k):
    model = NgramModel(teacher / "ngteach-model")
    positions = torch.arange(40, 60).view(2, 10)
    logits = torch.randn(2, 10, len(model.vocab))
    targets = torch.from_numpy(np.asarray(model.tokens()[positions.numpy()], dtype=np.int64))
    rows = TeacherReader(RankFile(teacher / "ranks.bin"), k=k).rows(positions)
    loss, ce = objective(RunConfig(loss="rank", weight=0.3, smoothing=0.2), logits, targets, rows)
    unsmoothed, _ = objective(RunConfig(loss="rank", weight=0.3, smoothing=0.0), logits, targets, rows)
    plain = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    smooth = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", label_smoothing=0.2)
    torch.testing.assert_close(ce, plain)
    torch.testing.assert_close(loss - unsmoothed, smooth - plain)  # only the cross-entropy term changed


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_pl_is_the_papers_objective_averaged_over_the_real_entries(teacher, smoothing):
    model = NgramModel(teacher / "ngteach-model")
    positions = torch.arange(40, 46).view(2, 3)
    logits = torch.randn(2, 3, len(model.vocab), dtype=torch.float64).float()
    targets = torch.from_numpy(np.asarray(model.tokens()[positions.numpy()], dtype=np.int64))
    rows = TeacherReader(RankFile(teacher / "ranks.bin"), min_order=2).rows(positions)  # rows of several lengths
    assert len(set(rows.mask.sum(-1).flatten().tolist())) > 1
    loss, ce = objective(RunConfig(loss="pl", smoothing=smoothing), logits, targets, rows)
    for b, t in np.ndindex(2, 3):
        n = int(rows.mask[b, t].sum())
        ids, orders = rows.ranks[b, t, :n].tolist(), rows.partitions[b, t, :n].tolist()
        row_logits = logits[b, t].double()
        # the loop: each entry's cost against the words not placed in an earlier partition
        costs, placed, j = [], set(), 0
        while j < n:
            end = next((e for e in range(j, n) if orders[e] != orders[j]), n)
            allowed = [w for w in range(len(model.vocab)) if w not in placed]
            costs += [float(torch.logsumexp(row_logits[allowed], 0) - row_logits[ids[e]]) for e in range(j, end)]
            placed.update(ids[j:end])
            j = end
        smooth = float(F.cross_entropy(row_logits, torch.tensor(ids[0]), label_smoothing=smoothing))
        assert costs[0] == pytest.approx(float(ce[b, t]), rel=1e-5)
        assert float(loss[b, t]) == pytest.approx((smooth + sum(costs[1:])) / n, rel=1e-5)


def test_teacher_weight_schedules_by_hand():
    config = RunConfig(loss="rank", weight=0.5)
    weight = lambda schedule, tokens, history=(): train.teacher_weight(  # noqa: E731
        replace(config, weight_schedule=schedule), tokens, 1000, list(history))
    assert weight("constant", 10**9) == 0.5
    assert [weight("linear:2", t) for t in (0, 500, 1000, 1500, 2000, 5000)] == [0.5, 0.375, 0.25, 0.125, 0.0, 0.0]
    assert [weight("linear:0.5", t) for t in (0, 250, 600)] == [0.5, 0.25, 0.0]
    assert [weight("linear-tokens:4000", t) for t in (0, 1000, 4000)] == [0.5, 0.375, 0.0]
    # plateau: on until an epoch is not 0.1% better in perplexity than the best before it, then off for good
    better = [5.0, 4.9, 4.8]
    assert weight("plateau", 0, better) == 0.5
    assert weight("plateau", 0, [5.0, 4.9, 4.9 - 0.0005]) == 0.0  # 0.05% better: a plateau
    assert weight("plateau", 0, [5.0, 5.1, 4.0]) == 0.0  # worse once is enough, whatever comes after
    for bad in ("linear", "linear:0", "linear:-1", "linear-tokens:1.5", "cosine", "plateau:3", "linear:inf"):
        with pytest.raises(NgteachError, match="--weight-schedule must be one of"):
            train.check_config(replace(config, weight_schedule=bad))
    with pytest.raises(NgteachError, match="--weight-schedule plateau needs a teacher"):
        train.check_config(RunConfig(loss="ls", weight_schedule="plateau"))


@pytest.mark.slow
def test_a_linear_schedule_reaches_the_runs_batches(teacher, tmp_path):
    def metrics(out: str, **changes) -> list[dict]:
        run(tiny_config(teacher, tmp_path / out, loss="rank", weight=0.5, epochs=2, patience=9, **changes),
            log=lambda m: None)
        return [json.loads(line) for line in (tmp_path / out / "metrics.jsonl").read_text().splitlines()]

    scheduled, constant = metrics("linear", weight_schedule="linear:2"), metrics("constant")
    assert [m["teacher_weight"] for m in scheduled] == pytest.approx([0.25, 0.0])
    assert [m["teacher_weight"] for m in constant] == [0.5, 0.5]
    assert all(s["train_loss"] < c["train_loss"] for s, c in zip(scheduled, constant))  # less weight, less loss


# ---- whole runs -----------------------------------------------------------------------------

def test_same_seed_same_run_bit_for_bit(teacher, tmp_path):
    a = run(tiny_config(teacher, tmp_path / "a", loss="rank"), log=lambda m: None)
    b = run(tiny_config(teacher, tmp_path / "b", loss="rank"), log=lambda m: None)
    assert a["valid_ppl"] == b["valid_ppl"] and a["test_ppl"] == b["test_ppl"]
    state_a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=False)["model"]
    state_b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=False)["model"]
    assert all(torch.equal(state_a[name], state_b[name]) for name in state_a)
    assert np.array_equal(np.load(tmp_path / "a/test_logprobs.npy"), np.load(tmp_path / "b/test_logprobs.npy"))


def test_run_directory_contents(teacher, tmp_path):
    summary = run(tiny_config(teacher, tmp_path / "r"), log=lambda m: None)
    out = tmp_path / "r"
    assert {"config.json", "metrics.jsonl", "summary.json", "test_logprobs.npy", "test_lines.npy"} <= set(
        os.listdir(out))
    assert {"last.pt", "best.pt"} <= set(os.listdir(out / "checkpoints"))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert summary["valid_ppl"] == pytest.approx(min(m["valid_ppl"] for m in lines))
    logprobs = np.load(out / "test_logprobs.npy")
    assert summary["test_ppl"] == pytest.approx(float(np.exp(-logprobs.astype(np.float64).mean())))
    assert len(logprobs) == summary["test_tokens"] == len(NgramModel(teacher / "ngteach-model").tokenizer
                                                          .encode_file(teacher / "test.txt"))
    assert summary["test_ppl"] < len(NgramModel(teacher / "ngteach-model").vocab)  # it learned something


def test_min_improvement_stops_a_run_that_only_crawls(teacher, tmp_path):
    # Every epoch after the first improves by far less than 90%: patience 2 stops after epoch 3,
    # and the plateau schedule divides the rate by 4 after epoch 2 (the rate logged is the epoch's own).
    summary = run(tiny_config(teacher, tmp_path / "r", epochs=6, patience=2, min_improvement=0.9), log=lambda m: None)
    lines = [json.loads(line) for line in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert summary["epochs"] == 3
    assert [m["lr"] for m in lines] == pytest.approx([2e-3, 2e-3, 2e-3 / 4])
    # yet the best checkpoint is the best epoch, however small its gain
    assert summary["valid_ppl"] == pytest.approx(min(m["valid_ppl"] for m in lines))


@pytest.mark.parametrize("budget, tokens", [({"max_tokens": 1000}, 7 * 160), ({"max_time": 1e-9}, 160)])
def test_a_budget_ends_the_epoch_at_the_batch_that_spends_it(teacher, tmp_path, budget, tokens):
    # 160 tokens a batch (8 columns x 20): the run stops inside its first epoch, then is
    # evaluated as any other
    summary = run(tiny_config(teacher, tmp_path / "r", **budget), log=lambda m: None)
    lines = [json.loads(line) for line in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert summary["train_tokens"] == tokens and summary["epochs"] == 1
    assert [m["tokens"] for m in lines] == [tokens]
    assert summary["test_ppl"] is not None and (tmp_path / "r/checkpoints/best.pt").exists()


@pytest.mark.slow
def test_out_of_vocabulary_test_tokens_against_a_hand_count(teacher, tmp_path):
    summary = run(tiny_config(teacher, tmp_path / "r", epochs=3, patience=9), log=lambda m: None)
    known = set((teacher / "ngteach-model" / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1])
    words = [w for line in (teacher / "test.txt").read_text(encoding="utf-8").splitlines() for w in line.split() + [None]]
    oov = [i for i, word in enumerate(words) if word is not None and word not in known]  # None: the <eos>
    assert 0 < len(oov) < len(words)
    assert np.array_equal(np.load(tmp_path / "r/test_oov.npy"), oov)
    logprobs = np.load(tmp_path / "r/test_logprobs.npy").astype(np.float64)
    others = [logprobs[i] for i in range(len(words)) if i not in set(oov)]
    assert summary["test_oov"] == len(oov) and summary["test_oov_share"] == pytest.approx(len(oov) / len(words))
    assert summary["test_ppl_no_oov"] == pytest.approx(math.exp(-math.fsum(others) / len(others)), rel=1e-9)
    assert summary["stopped"] == "epochs" and summary["valid_oov"] == 0  # held out of the training stream
    assert json.loads((tmp_path / "r/summary.json").read_text()) == summary
    lines = [json.loads(line) for line in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert all(m["valid_ppl_no_oov"] == pytest.approx(m["valid_ppl"]) for m in lines)
    evaluated = subprocess.run([*COMMAND, "eval", str(tmp_path / "r"), str(teacher / "test.txt")],
                               capture_output=True, text=True, check=True)
    assert (f"text: {len(oov):,} out-of-vocabulary tokens (<unk>), {len(oov) / len(words):.1%}; perplexity "
            f"without them {summary['test_ppl_no_oov']:.2f}") in evaluated.stdout
    assert ("out-of-vocabulary" in evaluated.stderr) == (len(oov) / len(words) > train.OOV_WARNING_SHARE)


@pytest.mark.parametrize("changes, stopped", [({"max_tokens": 1000}, "max-tokens"), ({"max_time": 1e-9}, "max-time"),
                                              ({"epochs": 6, "patience": 1, "min_improvement": 0.9}, "early stopping")])
def test_summary_says_why_training_stopped(teacher, tmp_path, changes, stopped):
    said = []
    summary = run(tiny_config(teacher, tmp_path / "r", **changes), log=said.append)
    assert summary["stopped"] == stopped
    assert sum(line.startswith("stopping: ") for line in said) == 1


@pytest.mark.parametrize("every", ["0", "7"])  # killed after an epoch / in the middle of one
@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_result(teacher, tmp_path, every):
    args = ["distill", "--size", "tiny", "--window", "20", "--batch-size", "8", "--epochs", "4", "--patience", "9",
            "--loss", "rank", "--model", str(teacher / "ngteach-model"), "--ranks", str(teacher / "ranks.bin"),
            "--test", str(teacher / "test.txt"), "--checkpoint-every", every]
    subprocess.run([*COMMAND, *args, "--out", str(tmp_path / "whole")], check=True, capture_output=True)
    victim = subprocess.Popen([*COMMAND, *args, "--out", str(tmp_path / "cut")], stderr=subprocess.DEVNULL)
    last = tmp_path / "cut/checkpoints/last.pt"
    deadline = time.time() + 120
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "cut/summary.json").exists(), "the run finished before it could be killed"
    resumed = subprocess.run([*COMMAND, "distill", "--resume", str(tmp_path / "cut")], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    resuming = next(line for line in resumed.stderr.splitlines() if line.startswith("resuming"))
    assert ("batch" in resuming) == (every != "0")  # "resuming ... after epoch 1, batch 7"
    whole = json.loads((tmp_path / "whole/summary.json").read_text())
    cut = json.loads((tmp_path / "cut/summary.json").read_text())
    # Bit for bit when run alone, at every kill point tried; but in one setting (the whole
    # suite in a fresh clone, beside an experiment grid) the resumed run of [0] ended 7e-7
    # higher, the same figures twice (not yet explained; see the README). A resume that lost
    # any state (RNG, optimizer moments, batch position) moves these by far more than 1e-5.
    assert math.isclose(cut["test_ppl"], whole["test_ppl"], rel_tol=1e-5)
    assert math.isclose(cut["valid_ppl"], whole["valid_ppl"], rel_tol=1e-5)
    # the environment of the start is kept; the resume adds its own, with where it picked up
    environment = json.loads((tmp_path / "cut/environment.json").read_text())
    started = json.loads((tmp_path / "whole/environment.json").read_text())
    assert {key: environment[key] for key in started} == started
    (picked_up,) = environment["resumes"]
    assert {key: picked_up[key] for key in started} == started
    assert f"after epoch {picked_up['epoch']}" in resuming and (picked_up["batch"] > 0) == (every != "0")


def test_a_resume_forgets_the_metrics_of_an_epoch_it_trains_again(teacher, tmp_path):
    # Killed between writing epoch 2's metrics and its checkpoint: the run resumes after
    # epoch 1, and epoch 2 must be in metrics.jsonl once, as trained again.
    config = tiny_config(teacher, tmp_path / "r", epochs=3)

    def stop_after_epoch_1(line: str) -> None:
        if line.startswith("epoch 1:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(config, log=stop_after_epoch_1)
    metrics = tmp_path / "r/metrics.jsonl"
    (first,) = [json.loads(line) for line in metrics.read_text().splitlines()]
    with open(metrics, "a") as f:
        f.write(json.dumps({**first, "epoch": 2, "valid_ppl": 1.0}) + "\n")  # the line of the lost epoch 2
    run(config, resume=True, log=lambda line: None)
    epochs = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [m["epoch"] for m in epochs] == [1, 2, 3] and epochs[1]["valid_ppl"] != 1.0


def test_resume_refuses_other_options(teacher, tmp_path):
    result = subprocess.run([*COMMAND, "distill", "--resume", str(tmp_path), "--epochs", "9"], capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert result.stderr == "ngteach: error: --resume takes no other option (the run's config.json holds its " \
                            "settings), not --epochs\n"


# ---- bad input ------------------------------------------------------------------------------

def test_ranks_of_another_corpus_are_refused(teacher, tmp_path):
    (tmp_path / "other.txt").write_text("a b c\nd e f\n", encoding="utf-8")
    model = NgramModel(teacher / "ngteach-model")
    write_ranks(model, model.tokenizer.encode_file(tmp_path / "other.txt"), tmp_path / "other.bin", 4)
    with pytest.raises(NgteachError, match="different token stream"):
        run(tiny_config(teacher, tmp_path / "x", loss="rank", ranks=str(tmp_path / "other.bin")), log=lambda m: None)


@pytest.mark.slow
@pytest.mark.parametrize("args, mentions", [
    (["--loss", "hinge"], "--loss"),
    (["--student", "gru"], "--student"),
    (["--size", "huge"], "--size"),
    (["--width", "0"], "--width"),
    (["--loss", "rank", "--ranks", "missing.bin"], "missing.bin"),
    (["--valid", "EMPTY"], "empty"),
    (["--loss", "kl"], "log-probabilities"),
    (["--loss", "ce", "--smoothing", "0.1"], "--smoothing"),
    (["--loss", "rank", "--smoothing", "1.5"], "--smoothing"),
    (["--min-improvement", "-1"], "--min-improvement"),
    (["--max-tokens", "0"], "--max-tokens"),
    (["--partition", "bogus"], "--partition"),
    (["--loss", "rank", "--k", "0"], "--k"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--loss", "rank", "--weight", "nan"], "--weight"),
    (["--clip", "nan"], "--clip"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "4294967296"], "--seed"),
    (["--patience", "0"], "--patience"),
    (["--loss", "rank", "--min-order", "5"], "--min-order 5 is above the order of the teacher"),
    (["--batch-size", "100000"], "--batch-size"),
])
def test_bad_distill_options_give_one_line(teacher, tmp_path, args, mentions):
    args = [str(teacher / "empty.txt") if a == "EMPTY" else a for a in args]
    result = subprocess.run([*COMMAND, "distill", "--model", str(teacher / "ngteach-model"), "--ranks",
                             str(teacher / "ranks.bin"), "--out", str(tmp_path / "run"), *args],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ngteach: error:") and mentions in lines[0], result.stderr
    assert not (tmp_path / "run").exists()  # so the corrected command runs as it is


@pytest.mark.parametrize("damage, says", [("ids", "ids out of range in row 5"),
                                          ("rows", "rows and a vocabulary of")])
def test_corrupt_ranks_with_matching_checksums_are_refused(teacher, tmp_path, damage, says):
    good = RankFile(teacher / "ranks.bin")
    header = {key: value for key, value in good.header.items() if key != "_data_offset"}
    header["n_positions"] -= damage == "rows"  # the header of another stream, its checksums kept
    with RankFileWriter(header, tmp_path) as writer:
        for name in ("ids", "orders"):
            writer.arrays[name][:] = getattr(good, name)[:header["n_positions"]]
        if damage == "ids":
            writer.arrays["ids"][5, 0] = header["vocab_size"]
        writer.publish(tmp_path / "bad.bin")
    with pytest.raises(NgteachError, match=says):
        run(tiny_config(teacher, tmp_path / "x", loss="rank", ranks=str(tmp_path / "bad.bin")), log=lambda m: None)
    assert not (tmp_path / "x").exists()


def test_a_run_failing_before_its_first_checkpoint_leaves_no_directory(teacher, tmp_path, monkeypatch):
    def fail(config, *args, **kwargs):
        assert (Path(config.out) / "config.json").exists()
        raise NgteachError("failed in the first epoch")

    monkeypatch.setattr(train, "_train_epoch", fail)
    with pytest.raises(NgteachError, match="failed in the first epoch"):
        run(tiny_config(teacher, tmp_path / "x"), log=lambda m: None)
    assert not (tmp_path / "x").exists()
    (tmp_path / "mine").mkdir()  # a folder that was there before the run is the user's: it stays
    with pytest.raises(NgteachError, match="failed in the first epoch"):
        run(tiny_config(teacher, tmp_path / "mine"), log=lambda m: None)
    assert (tmp_path / "mine").is_dir()


def test_a_config_written_before_smoothing_existed_loads_without_smoothing(tmp_path):
    # rank's default smoothing became 0.1 later: an older run's config.json, which has no
    # smoothing, meant none, and --resume, eval and experiment's checks must read it so
    (tmp_path / "old").mkdir()
    values = json.loads(json.dumps(asdict(RunConfig(loss="rank", weight=0.1))))
    del values["smoothing"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(values), encoding="utf-8")
    assert RunConfig.load(tmp_path / "old" / "config.json").smoothing == 0.0
    assert RunConfig(loss="rank").smoothing == 0.1  # a new run's default is unchanged


@pytest.mark.slow
def test_damaged_run_directories_give_one_line(teacher, tmp_path):
    run(tiny_config(teacher, tmp_path / "good", epochs=1), log=lambda m: None)
    text = teacher / "test.txt"

    def damaged(name: str, change_config=None, checkpoint=None) -> Path:
        shutil.copytree(tmp_path / "good", tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        if change_config:
            change_config(config)
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        if checkpoint is not None:
            torch.save(checkpoint, tmp_path / name / "checkpoints" / "best.pt")
        return tmp_path / name

    def refused(run_dir: Path, says: str) -> None:
        with pytest.raises(NgteachError, match=says) as error:
            evaluate_run(run_dir, text)
        assert "\n" not in str(error.value)

    refused(damaged("epochs", lambda c: c.update(epochs="1")),
            "epochs/config.json: not a readable run configuration .epochs must be an integer, not '1'")
    refused(damaged("student", lambda c: c.update(student="lstm")), "student must be an object")
    refused(damaged("width", lambda c: c["student"].update(width="64")), "student.width must be an integer")
    refused(damaged("kind", lambda c: c["student"].update(kind="gru")), "--student must be one of lstm")
    refused(damaged("nan", lambda c: c.update(lr=float("nan"))), "nan/config.json: --lr must be a finite number")
    refused(damaged("list", checkpoint=[1, 2]), "list/checkpoints/best.pt: not a checkpoint")
    refused(damaged("no_model", checkpoint={"foo": 1}), "no_model/checkpoints/best.pt: not a checkpoint")
    refused(damaged("narrow", lambda c: c["student"].update(width=32, embedding=32)),
            "narrow/checkpoints/best.pt: the weights do not fit .* size mismatch")
    # a model directory rebuilt from another text: refused by its vocabulary, or in a run made
    # before vocabularies were recorded, by the shape of the weights
    (tmp_path / "other.txt").write_text("a b c\nd e f\n", encoding="utf-8")
    build_model(tmp_path / "other.txt", tmp_path / "other", order=2)
    refused(damaged("rebuilt", lambda c: c.update(model_dir=str(tmp_path / "other"))),
            "rebuilt: the model directory .*other has another vocabulary than the run was trained with")
    refused(damaged("older", lambda c: c.update(model_dir=str(tmp_path / "other"), vocab_sha256=None)),
            "older/checkpoints/best.pt: the weights do not fit .* size mismatch")
    refused(damaged("moved", lambda c: c.update(model_dir="moved-model")),
            "moved: the run's model directory moved-model is missing .the path is relative to the folder the "
            "run was made in")
    # a run made before vocab_sha256 was recorded still reads as before
    good_logprobs = evaluate_run(tmp_path / "good", text)
    assert np.array_equal(evaluate_run(damaged("old", lambda c: c.pop("vocab_sha256")), text), good_logprobs)
    assert json.loads((tmp_path / "good" / "config.json").read_text())["vocab_sha256"] == \
        NgramModel(teacher / "ngteach-model").meta["vocab_sha256"]
    # a last.pt whose training state lost its keys cannot be resumed
    last = tmp_path / "good" / "checkpoints" / "last.pt"
    damaged("stateless")
    torch.save({**torch.load(last, weights_only=False), "state": {"epoch": 1}},
               tmp_path / "stateless" / "checkpoints" / "last.pt")
    with pytest.raises(NgteachError, match="last.pt: not a checkpoint of ngteach distill .its training state"):
        run(replace(RunConfig.load(tmp_path / "stateless" / "config.json"), out=str(tmp_path / "stateless")),
            resume=True, log=lambda m: None)
    for name, args in [("kind", ["eval", str(tmp_path / "kind"), str(text)]),
                       ("epochs", ["distill", "--resume", str(tmp_path / "epochs")])]:
        result = subprocess.run([*COMMAND, *args], capture_output=True, text=True)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"ngteach: error: {tmp_path / name / 'config.json'}: ")


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(teacher, tmp_path):
    """torchrun with 2 CPU processes (gloo): each reads half the columns and gradients are
    averaged, so without dropout it must follow the one-process run with both halves."""
    common = ["--size", "tiny", "--window", "20", "--epochs", "2", "--dropout", "0", "--dropout-embedding", "0",
              "--model", str(teacher / "ngteach-model"), "--ranks", str(teacher / "ranks.bin"), "--loss", "rank",
              "--test", str(teacher / "test.txt")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "ngteach", "distill", *common, "--batch-size", "8",
                    "--out", str(tmp_path / "one")], check=True, capture_output=True, env=env)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "ngteach", "distill", *common, "--batch-size", "4", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one = json.loads((tmp_path / "one/summary.json").read_text())
    two = json.loads((tmp_path / "two/summary.json").read_text())
    assert two["test_ppl"] == pytest.approx(one["test_ppl"], rel=1e-4)
    assert two["train_tokens"] == one["train_tokens"]


@pytest.mark.slow
def test_two_process_ddp_resume_restores_each_process_dropout(teacher, tmp_path):
    """With dropout on, each process draws its own masks: a resumed torchrun run must
    restore every process's generator to finish like the uninterrupted one."""
    common = ["--size", "tiny", "--window", "20", "--batch-size", "4", "--model", str(teacher / "ngteach-model"),
              "--ranks", str(teacher / "ranks.bin"), "--test", str(teacher / "test.txt"), "--patience", "9"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "ngteach", "distill"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for out, epochs in (("whole", "2"), ("cut", "1")):
        done = subprocess.run([*torchrun, *common, "--epochs", epochs, "--out", str(tmp_path / out)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    # "cut" now holds exactly what a run killed after its first epoch leaves behind.
    config = json.loads((tmp_path / "cut/config.json").read_text())
    (tmp_path / "cut/config.json").write_text(json.dumps({**config, "epochs": 2}))
    (tmp_path / "cut/summary.json").unlink()
    resumed = subprocess.run([*torchrun, "--resume", str(tmp_path / "cut")], capture_output=True, text=True,
                             env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = json.loads((tmp_path / "whole/summary.json").read_text())
    cut = json.loads((tmp_path / "cut/summary.json").read_text())
    assert cut["valid_ppl"] == whole["valid_ppl"] and cut["test_ppl"] == whole["test_ppl"]
    one_process = subprocess.run([*COMMAND, "distill", "--resume", str(tmp_path / "cut")], capture_output=True,
                                 text=True, env=env)
    assert one_process.returncode != 0 and "2 process(es)" in one_process.stderr


def test_count_partitions_group_ties_of_one_order(teacher, tmp_path):
    model = NgramModel(teacher / "ngteach-model")
    write_ranks(model, model.tokens(), tmp_path / "scored.bin", 8, with_scores=True)
    ranks = RankFile(tmp_path / "scored.bin")
    positions = torch.arange(200, 260).view(3, 20)
    parts = TeacherReader(ranks, partition="count").rows(positions).partitions
    orders = np.asarray(ranks.orders[200:260]).reshape(3, 20, 8).astype(np.int64)
    counts = np.asarray(ranks.scores[200:260]).reshape(3, 20, 8).astype(np.int64)
    # two neighbours share a partition exactly when both their order and count agree
    same = parts[..., 2:] == parts[..., 1:-1]
    expected = (orders[..., 2:] == orders[..., 1:-1]) & (counts[..., 2:] == counts[..., 1:-1])
    assert torch.equal(same, torch.from_numpy(expected))
    assert (parts[..., 0] == GT_PARTITION).all() and (parts[..., 1] != GT_PARTITION).all()
    with pytest.raises(NgteachError, match="--scores"):
        TeacherReader(RankFile(teacher / "ranks.bin"), partition="count")


def test_nt_asgd_trigger_and_averaged_weights():
    from student.train import NONMONO, averaged_weights, make_optimizer, starts_averaging

    config = RunConfig(optimizer="asgd", lr=0.05)
    state = {"averaging": False, "history": [5.0, 4.0] + [3.0] * (NONMONO - 1)}
    assert not starts_averaging(config, state)  # still improving on NONMONO epochs ago
    state["history"].append(4.5)  # worse than the best before the last NONMONO epochs
    assert starts_averaging(config, state)
    assert not starts_averaging(replace(config, optimizer="sgd"), state)

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    sgd = make_optimizer(config, model)
    assert isinstance(sgd, torch.optim.SGD)
    optimizer = make_optimizer(config, model, averaging=True)
    snapshots = []
    for _ in range(4):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).sum().backward()
        optimizer.step()
        snapshots.append(model.weight.detach().clone())
    raw = model.weight.detach().clone()
    average = optimizer.state[model.weight]["ax"].clone()  # torch's running average of the iterates
    assert not torch.equal(average, raw)
    # it lies within the range of the iterates it averages
    assert (average <= torch.stack(snapshots).amax(0) + 1e-6).all()
    assert (average >= torch.stack(snapshots).amin(0) - 1e-6).all()
    with averaged_weights(model, optimizer):
        assert torch.equal(model.weight.detach(), average)
    assert torch.equal(model.weight.detach(), raw)
    with averaged_weights(model, sgd):  # nothing to average: weights untouched
        assert torch.equal(model.weight.detach(), raw)


def test_asgd_run_smoke(teacher, tmp_path):
    summary = run(tiny_config(teacher, tmp_path / "a", optimizer="asgd", lr=5.0, epochs=2), log=lambda m: None)
    assert math.isfinite(summary["test_ppl"])


@pytest.mark.slow
def test_eval_and_compare_commands(teacher, tmp_path):
    first = run(tiny_config(teacher, tmp_path / "ce"), log=lambda m: None)
    run(tiny_config(teacher, tmp_path / "rank", loss="rank", weight=0.5), log=lambda m: None)
    evaluated = subprocess.run([*COMMAND, "eval", str(tmp_path / "ce"), str(teacher / "test.txt")],
                               capture_output=True, text=True, check=True)
    assert f"perplexity {first['test_ppl']:.2f} over {first['test_tokens']:,} tokens" in evaluated.stdout
    # a named split is read from its file, here the built-in corpus written into a fresh cache
    (tmp_path / "docs-test.txt").write_text(python_docs_splits()["test"], encoding="utf-8")
    by_file, by_name = (subprocess.run([*COMMAND, "eval", str(tmp_path / "ce"), text], capture_output=True, text=True,
                                       check=True, env={**os.environ, "NGTEACH_CACHE": str(tmp_path / "cache")})
                        for text in (str(tmp_path / "docs-test.txt"), "python-docs:test"))
    assert by_name.stdout.split("perplexity")[1] == by_file.stdout.split("perplexity")[1]
    compared = subprocess.run([*COMMAND, "compare", str(tmp_path / "ce"), str(tmp_path / "rank"), "--resamples",
                               "1000"], capture_output=True, text=True, check=True)
    lines = compared.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["perplexity", "out-of-vocabulary", "difference", "p-value",
                                                   "verdict"]
    assert f"{first['test_ppl']:.2f}" in lines[0]
    missing = subprocess.run([*COMMAND, "compare", str(tmp_path / "ce"), str(tmp_path / "nothing")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stderr.startswith("ngteach: error:")


@pytest.mark.parametrize("memory", [0, 16])
def test_transformer_runs(teacher, tmp_path, memory):
    config = tiny_config(teacher, tmp_path / "t", loss="rank", epochs=1,
                         student=student_config("transformer", "tiny", window=16, memory=memory))
    summary = run(config, log=lambda m: None)
    uniform = len(NgramModel(teacher / "ngteach-model").vocab)
    assert math.isfinite(summary["test_ppl"]) and summary["test_ppl"] < uniform / 2  # it learned something


def test_kl_from_teacher_logprobs(teacher, tmp_path):
    """A ranks file with log-probabilities (here each row's counts normalised: a stand-in for
    a probabilistic teacher) drives --loss kl end to end."""
    from ngram_teacher import RankFileWriter

    model = NgramModel(teacher / "ngteach-model")
    write_ranks(model, model.tokens(), tmp_path / "counts.bin", 8, gt_first=False, with_scores=True)
    counted = RankFile(tmp_path / "counts.bin")
    header = {**counted.header, "scores": {"kind": "logprob", "dtype": "<f4"}}
    header.pop("_data_offset")
    counts = np.asarray(counted.scores, dtype=np.float64)
    with RankFileWriter(header, tmp_path) as writer:
        writer.arrays["ids"][:] = counted.ids
        writer.arrays["orders"][:] = counted.orders
        with np.errstate(divide="ignore"):
            writer.arrays["scores"][:] = np.log(0.9 * counts / counts.sum(1, keepdims=True))
        writer.publish(tmp_path / "logprobs.bin")
    summary = run(tiny_config(teacher, tmp_path / "kl", loss="kl", weight=0.5, ranks=str(tmp_path / "logprobs.bin")),
                  log=lambda m: None)
    assert math.isfinite(summary["test_ppl"])


@pytest.mark.slow
def test_teacher_smoothing_is_each_positions_leftover_mass(teacher, tmp_path):
    model = NgramModel(teacher / "ngteach-model")
    positions = torch.arange(40, 46).view(2, 3)
    vocab = len(model.vocab)
    logits = torch.randn(2, 3, vocab)
    targets = torch.from_numpy(np.asarray(model.tokens()[positions.numpy()], dtype=np.int64))
    logprobs = torch.log(torch.tensor([[[0.5, 0.2], [0.3, 0.3], [0.9, 0.1]], [[0.05, 0.05], [0.6, 0.0], [0.25, 0.25]]]))
    mask = torch.tensor([[[True, True], [True, True], [True, True]], [[True, True], [True, False], [True, True]]])
    rows = TeacherRows(torch.stack([targets, (targets + 1) % vocab], -1), None, mask, logprobs, True)
    leftover = [[0.3, 0.4, 0.0], [0.9, 0.4, 0.5]]  # 1 - the real entries' probabilities, by hand
    loss, ce = objective(RunConfig(loss="rank", weight=0.0, smoothing="teacher"), logits, targets, rows)
    for b, t in np.ndindex(2, 3):
        expected = F.cross_entropy(logits[b, t], targets[b, t], label_smoothing=leftover[b][t])
        assert float(loss[b, t]) == pytest.approx(float(expected), rel=1e-5)
    # a count teacher's entries get the probabilities of the Kneser-Ney model of its counts
    from ngram_teacher import ArpaTeacher, load_teacher
    from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, estimate_kneser_ney
    from student.data import FileRows

    reader = TeacherReader(RankFile(teacher / "ranks.bin"))
    reader.score_entries(train.kneser_ney_scorer(RunConfig(model_dir=str(teacher / "ngteach-model")), model,
                                                 model.tokens(), reader))
    scored = reader.rows(positions)
    kneser_ney = ArpaTeacher(estimate_kneser_ney(model, 4, LMPLZ_FALLBACK), model.vocab, 8)
    unscored = TeacherReader(FileRows(RankFile(teacher / "ranks.bin"))).rows(positions)
    for b, t in np.ndindex(2, 3):
        position = int(positions[b, t])
        expected = kneser_ney.word_logprobs(model.tokens(), [position], unscored.ranks[b, t][None].numpy())[0]
        real = unscored.mask[b, t].numpy()
        assert np.allclose(scored.logprobs[b, t].numpy()[real], expected[real])
        assert (scored.logprobs[b, t].numpy()[~real] == -np.inf).all()
    # from the command line too, and refused for a teacher with neither log-probabilities nor counts
    result = subprocess.run([*COMMAND, "distill", "--size", "tiny", "--epochs", "1", "--max-tokens", "500",
                             "--smoothing", "teacher", "--model", str(teacher / "ngteach-model"), "--ranks",
                             str(teacher / "ranks.bin"), "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    write_ranks(load_teacher(f"cloze:{teacher / 'ngteach-model'}", model, 8), model.tokens(), tmp_path / "cloze.bin", 8)
    result = subprocess.run([*COMMAND, "distill", "--size", "tiny", "--epochs", "1", "--max-tokens", "500",
                             "--smoothing", "teacher", "--model", str(teacher / "ngteach-model"), "--ranks",
                             str(tmp_path / "cloze.bin"), "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert result.returncode == 1 and "--smoothing teacher needs the teacher's log-probabilities" in result.stderr
    assert not (tmp_path / "c").exists()
    for bad, says in (("lots", "--smoothing must be a number or teacher, not 'lots'"), ("1.5", "--smoothing 1.5 needs")):
        result = subprocess.run([*COMMAND, "distill", "--smoothing", bad, "--out", str(tmp_path / "r")],
                                capture_output=True, text=True)
        assert result.returncode != 0 and says in result.stderr


def test_distills_options_are_the_runs_settings():
    """One schema: every distill option is a setting config_from_options takes, and back."""
    import inspect

    from ngteach.training import distill

    assert set(inspect.signature(distill).parameters) - {"ctx", "data_dir", "resume"} == train.option_names()
    config = train.config_from_options({"student": "transformer", "size": "tiny", "heads": 4, "model": "m",
                                        "optimizer": "sgd", "weight_decay": 0.0, "valid_fraction": 0.2})
    assert (config.student.kind, config.student.heads, config.model_dir) == ("transformer", 4, "m")
    assert config.lr == train.DEFAULT_LR["sgd"] == 20.0 and config.weight_decay == 0.0 and config.valid_fraction == 0.2
    for options, says in (({"wings": 2}, "unknown option 'wings'"),
                          ({"epochs": "one"}, "Invalid value for '--epochs': 'one' is not an integer"),
                          ({"tie_weights": "no"}, "Invalid value for '--tie-weights': 'no' is not true or false"),
                          ({"ranks": "r.bin", "teacher": "count:m"}, "give --ranks FILE or --teacher SPEC, not both"),
                          ({"valid_fraction": 1.5}, "--valid-fraction must be between 0 and 1")):
        with pytest.raises(NgteachError, match=says):
            train.config_from_options(options)


def test_device_choices():
    assert train.torch_device("cpu") == torch.device("cpu")
    assert train.torch_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cpu:0", "cuda:x", "cuda:"):
        with pytest.raises(NgteachError, match=f"--device must be cpu, cuda or cuda:N, not '{bad}'"):
            train.config_from_options({"device": bad})
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, whatever this machine has
    with pytest.raises(NgteachError, match=f"--device {missing}: there is no such CUDA device here"):
        train.torch_device(missing)


@pytest.mark.slow
def test_kl_from_the_whole_kneser_ney_distribution(teacher, tmp_path):
    """--kl-tail full: the loss is (1 - w) ce + w KL of the ARPA teacher's whole
    distribution at each position; it learns, and is refused without an ARPA teacher."""
    from ngram_teacher.arpa import write_arpa
    from ngram_teacher.arpa_rank import load_teacher
    from ngram_teacher.kneser_ney import estimate_kneser_ney
    from student.data import OnlineRows
    from student.losses import kl_full

    model = NgramModel(teacher / "ngteach-model")
    write_arpa(estimate_kneser_ney(model, 3), tmp_path / "kn.arpa")
    arpa = load_teacher(tmp_path / "kn.arpa", model, 8)
    reader = TeacherReader(OnlineRows(arpa, model.tokens(), 8, "arpa"), dense=True)
    positions = torch.tensor([[5, 6, 7], [100, 101, 102]])
    rows = reader.rows(positions)
    torch.manual_seed(0)
    logits = torch.randn(2, 3, len(model.vocab))
    targets = torch.from_numpy(np.asarray(model.tokens()[positions.numpy()], np.int64))
    loss, ce = objective(RunConfig(loss="kl", weight=0.5, kl_tail="full"), logits, targets, rows)
    dense = torch.from_numpy(arpa.log_distribution(model.tokens(), positions.reshape(-1).numpy())).reshape(2, 3, -1)
    assert torch.allclose(loss, 0.5 * ce + 0.5 * kl_full(logits, dense))
    result = subprocess.run([*COMMAND, "distill", "--size", "tiny", "--epochs", "2", "--loss", "kl", "--kl-tail",
                             "full", "--teacher", f"arpa:{tmp_path / 'kn.arpa'}", "--model",
                             str(teacher / "ngteach-model"), "--test", str(teacher / "test.txt"), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[1]["valid_ppl"] < metrics[0]["valid_ppl"] < len(model.vocab)  # it learns
    result = subprocess.run([*COMMAND, "distill", "--loss", "kl", "--kl-tail", "full", "--model",
                             str(teacher / "ngteach-model"), "--ranks", str(teacher / "ranks.bin"), "--out",
                             str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 1 and "--kl-tail full needs the teacher's whole distribution" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
