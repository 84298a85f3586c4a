"""``ngteach experiment``: the grid is planned, run, skipped when done, resumed, tabulated."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from corpora import NgteachError
from corpora.builtin import python_docs_splits
from ngram_teacher import NgramModel, RankFile, load_teacher, write_ranks
from ngram_teacher.model import file_sha256
from student.experiment import (Step, check_made, corpus_record, corpus_splits, in_run_order, plan_runs,
                                prepare_teachers, run_experiment, schedule, write_corpus)
from student.results import Line, _test_bars, markdown, reference_bests, summarize, tokens_to_reach
from student.significance import load_run_lines, paired_bootstrap
from student.spec import Config, load_spec, parse_spec

COMMAND = [sys.executable, "-c", "from ngteach.cli import main; main()"]

SPEC = """
name = "small"
seeds = [0]
baseline = "ce"

[corpora.docs]
train = "docs.txt"
valid_fraction = 0.1
test_fraction = 0.1

[teachers.count2]
kind = "count"
order = 2
k = 4

[teachers.kn2]
kind = "kneser-ney"
order = 2
k = 4
discount_fallback = true

[student]
size = "tiny"
window = 20
batch_size = 8
epochs = 1
checkpoint_every = 0

[losses.ce]
loss = "ce"

[losses.rank]
loss = "rank"
weight = 0.1

[losses.kl]
loss = "kl"
"""

pytestmark = pytest.mark.slow  # whole grids: the slow part of the suite


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def spec_folder(root: Path, spec: str, name: str, lines: int) -> list[str]:
    """``root`` with the spec file ``name`` and docs.txt, the first ``lines`` lines of
    python-docs' train split (returned)."""
    docs = python_docs_splits()["train"].splitlines(keepends=True)[:lines]
    (root / "docs.txt").write_text("".join(docs), encoding="utf-8")
    (root / name).write_text(spec, encoding="utf-8")
    return docs


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The small grid run once: ce, rank@count2, rank@kn2, kl@kn2, one seed each."""
    root = tmp_path_factory.mktemp("grid")
    lines = spec_folder(root, SPEC, "small.toml", 1000)
    result = run_cli("experiment", "small.toml", "--out", "out", "--jobs", "2", cwd=root)
    assert result.returncode == 0, result.stderr
    return root, lines


def test_splits_are_the_tail_lines_of_train(grid):
    root, lines = grid
    data = root / "out/docs/data"
    assert (data / "test.txt").read_text(encoding="utf-8") == "".join(lines[900:])
    assert (data / "valid.txt").read_text(encoding="utf-8") == "".join(lines[800:900])
    assert (data / "train.txt").read_text(encoding="utf-8") == "".join(lines[:800])


def test_every_configuration_ran_with_its_teacher(grid):
    root, _ = grid
    runs = root / "out/docs/runs"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["ce-s0", "kl@kn2-s0", "rank@count2-s0",
                                                                    "rank@kn2-s0"]
    assert RankFile(root / "out/docs/teachers/count2/ranks.bin").header["teacher"]["kind"] == "count-ngram"
    kn = RankFile(root / "out/docs/teachers/kn2/ranks.bin").header
    assert kn["teacher"]["kind"] == "arpa" and kn["scores"]["kind"] == "logprob"
    config = json.loads((runs / "kl@kn2-s0/config.json").read_text())
    assert config["loss"] == "kl" and config["ranks"].endswith("teachers/kn2/ranks.bin")
    environment = json.loads((runs / "ce-s0/environment.json").read_text())
    # one torch thread per run by default, whatever --jobs is, so that a run redone alone gives the same numbers
    assert environment["libraries"]["torch"] and environment["cpu"] and environment["threads"] == 1


def test_results_table_csv_and_plots(grid):
    root, _ = grid
    out = root / "out"
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert len(rows) == 4
    for row in rows:
        summary = json.loads((out / row["run"] / "summary.json").read_text())
        assert float(row["test_ppl"]) == pytest.approx(summary["test_ppl"])
    table = (out / "results.md").read_text(encoding="utf-8")
    # the p-value against the baseline is the paired bootstrap of the two runs (one seed)
    rank, ce = out / "docs/runs/rank@count2-s0", out / "docs/runs/ce-s0"
    logprobs = [np.load(d / "test_logprobs.npy").astype(np.float64) for d in (rank, ce)]
    expected = paired_bootstrap(*logprobs, block=len(logprobs[0]) // 50,
                                lines=load_run_lines(ce, len(logprobs[0]))).p_value
    line = next(row for row in table.splitlines() if row.startswith("| rank@count2 "))
    assert f"{expected:.2g}" in line.split("|")[8]
    for name in ("docs-valid.png", "docs-test.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_teachers_of_one_loss_are_compared_pair_by_pair(grid):
    root, _ = grid
    out = root / "out"
    table = (out / "results.md").read_text(encoding="utf-8")
    rows = [row.split(" | ") for row in table.splitlines() if row.startswith("| rank | count2 | kn2 |")]
    assert len(rows) == 1 and not any(row.startswith("| kl |") for row in table.splitlines())  # kl: one teacher
    a, b = (out / f"docs/runs/rank@{t}-s0" for t in ("count2", "kn2"))
    ppl = [json.loads((d / "summary.json").read_text())["test_ppl"] for d in (a, b)]
    logprobs = [np.load(d / "test_logprobs.npy").astype(np.float64) for d in (a, b)]
    expected = paired_bootstrap(*logprobs, block=len(logprobs[0]) // 50, lines=load_run_lines(a, len(logprobs[0])))
    seeds, ppl_a, ppl_b, difference, p = rows[0][3:8]
    assert (seeds, float(ppl_a), float(ppl_b)) == ("1", pytest.approx(ppl[0], abs=0.006), pytest.approx(ppl[1], abs=0.006))
    assert difference == f"{ppl[0] - ppl[1]:+.2f} ({expected.ci[0]:+.2f} to {expected.ci[1]:+.2f})"
    assert p.startswith(f"{expected.p_value:.2g}")


def test_results_without_oov_leave_the_same_tokens_out_of_every_run(grid, tmp_path):
    root, _ = grid
    out = root / "out"
    spec = parse_spec(tomllib.loads(SPEC.replace('baseline = "ce"', 'baseline = "ce"\nmetric = "exclude-oov"')), root)
    tables = summarize(spec, plan_runs(spec, out))
    rank, ce = out / "docs/runs/rank@count2-s0", out / "docs/runs/ce-s0"
    vocab = set((out / "docs/model/vocab.txt").read_text(encoding="utf-8").split("\n")[:-1])
    words = [w for line in (out / "docs/data/test.txt").read_text(encoding="utf-8").splitlines()
             for w in line.split() + ["<eos>"]]
    kept = [i for i, w in enumerate(words) if w in vocab]
    assert 0 < len(kept) < len(words)
    logprobs = [np.load(d / "test_logprobs.npy").astype(np.float64)[kept] for d in (rank, ce)]
    # each line starts after the kept tokens of the lines before it
    starts = [0] + [sum(k <= i for k in kept) for i, w in enumerate(words[:-1]) if w == "<eos>"] + [len(kept)]
    expected = paired_bootstrap(*logprobs, block=len(kept) // 50, lines=starts)
    line = next(line for line in tables["docs"].lines if line.name == "rank@count2")
    assert line.p_baseline == expected.p_value and line.exclude_oov
    assert line.test_no_oov == [pytest.approx(np.exp(-logprobs[0].mean()), rel=1e-9)]
    assert tables["docs"].oov == (len(words) - len(kept), len(words))
    table = markdown(spec, tables)
    assert f"Out-of-vocabulary test tokens (<unk>): {len(words) - len(kept):,} of {len(words):,}" in table
    row = next(row for row in table.splitlines() if row.startswith("| rank@count2 ")).split(" | ")
    assert row[3] == f"{line.test_no_oov[0]:.2f}" and "Δ test ppl excl. OOV vs ce" in table


def test_a_corpus_min_count_gives_every_model_of_it_one_vocabulary_without_rarer_words(tmp_path):
    cloze = ('[teachers.cl2]\nkind = "cloze"\norder = 2\nk = 4\n\n[teachers.inf]\nkind = "infini"\nk = 4\n\n'
             '[teachers.loo]\nkind = "kneser-ney"\norder = 2\nk = 4\ndiscount_fallback = true\nleave_one_out = true\n\n'
             '[student]')
    spec_folder(tmp_path, SPEC.replace("test_fraction = 0.1", "test_fraction = 0.1\nmin_count = 3")
                .replace("[student]", cloze), "s.toml", 300)
    spec = load_spec(tmp_path / "s.toml")
    corpus = spec.corpora[0]
    out = tmp_path / "out"
    write_corpus(out / "docs/data", corpus_splits(spec, corpus), corpus_record(spec, corpus))
    prepare_teachers(spec, corpus, out, log=lambda m: None)
    counts = Counter((out / "docs/data/train.txt").read_text(encoding="utf-8").split())
    expected = {w for w, c in counts.items() if c >= 3} | {"<eos>", "<unk>"}
    for model in ("docs/model", "docs/teachers/count2/model", "docs/teachers/cl2/model"):
        assert set(NgramModel(out / model).vocab.tokens) == expected
    # the two-sided teacher's ranks, as write_ranks of its spec makes them
    cl2 = NgramModel(out / "docs/teachers/cl2/model")
    write_ranks(load_teacher(f"cloze:{cl2.directory}", cl2, 4), cl2.tokens(), tmp_path / "cl2.bin", 4, with_scores=True,
                corpus=str(out / "docs/data/train.txt"))
    assert (out / "docs/teachers/cl2/ranks.bin").read_bytes() == (tmp_path / "cl2.bin").read_bytes()
    # the unbounded-order teacher ranks from the shared base model's corpus (no order of its own)
    base = NgramModel(out / "docs/model")
    write_ranks(load_teacher(f"infini:{base.directory}", base, 4), base.tokens(), tmp_path / "inf.bin", 4,
                with_scores=True, corpus=str(out / "docs/data/train.txt"))
    assert (out / "docs/teachers/inf/ranks.bin").read_bytes() == (tmp_path / "inf.bin").read_bytes()
    assert not (out / "docs/teachers/inf/model").exists()
    # the leave-one-out Kneser-Ney teacher, from the base model's corpus too, without an ARPA file
    from ngram_teacher.kneser_ney import LMPLZ_FALLBACK
    from ngram_teacher.leave_one_out import LeaveOneOutTeacher

    write_ranks(LeaveOneOutTeacher(base, 2, LMPLZ_FALLBACK), base.tokens(), tmp_path / "loo.bin", 4,
                with_scores=True, corpus=str(out / "docs/data/train.txt"))
    assert (out / "docs/teachers/loo/ranks.bin").read_bytes() == (tmp_path / "loo.bin").read_bytes()
    assert not (out / "docs/teachers/loo/model.arpa").exists()
    assert json.loads((out / "docs/data/source.json").read_text())["min_count"] == 3


@pytest.mark.parametrize("metric, key", [("all", "valid_ppl"), ("exclude-oov", "valid_ppl_no_oov")])
def test_learning_speed_is_the_tokens_to_reach_the_ce_runs_best_validation(grid, metric, key):
    root, _ = grid
    out = root / "out"
    curves = {}
    for name in ("ce", "rank@count2"):
        epochs = [json.loads(line) for line in (out / f"docs/runs/{name}-s0/metrics.jsonl").read_text().splitlines()]
        curves[name] = [(e["tokens"], e[key]) for e in epochs]
        assert all(e["valid_ppl_no_oov"] != e["valid_ppl"] for e in epochs)  # the validation text has OOV tokens
    target = min(valid for _, valid in curves["ce"])
    expected = next((tokens for tokens, valid in curves["rank@count2"] if valid <= target), None)
    spec = parse_spec(tomllib.loads(SPEC.replace('baseline = "ce"', f'baseline = "ce"\nmetric = "{metric}"')), root)
    tables = summarize(spec, plan_runs(spec, out))
    line = next(line for line in tables["docs"].lines if line.name == "rank@count2")
    assert line.to_reference == {0: expected}
    ce = next(line for line in tables["docs"].lines if line.name == "ce")
    assert reference_bests(ce, key) == {0: target}
    table = markdown(spec, tables)
    assert ("tokens to ce's best valid excl. OOV |" in table) == (metric == "exclude-oov")
    row = next(row for row in table.splitlines() if row.startswith("| rank@count2 ")).split(" | ")
    assert row[-1].rstrip(" |") == ("not reached" if expected is None else f"{expected / 1e6:.2f}M")
    summary = json.loads((out / "docs/runs/rank@count2-s0/summary.json").read_text())
    assert row[4:6] == [f"{summary['valid_ppl']:.2f}", f"{summary['valid_ppl_no_oov']:.2f}"]


def test_a_reference_without_a_finite_validation_perplexity_yet_has_no_best(tmp_path):
    (tmp_path / "s0").mkdir()
    (tmp_path / "s1").mkdir()
    (tmp_path / "s0" / "metrics.jsonl").write_text(
        '{"tokens": 10, "valid_ppl": NaN}\n{"tokens": 20, "valid_ppl": 40.0}\n{"tokens": 30, "valid_ppl": 50.0}\n')
    (tmp_path / "s1" / "metrics.jsonl").write_text('{"tokens": 10, "valid_ppl": Infinity}\n')
    runs = {seed: SimpleNamespace(directory=tmp_path / f"s{seed}") for seed in (0, 1)}
    assert reference_bests(SimpleNamespace(runs=runs), "valid_ppl") == {0: 40.0}


def test_more_comparisons_than_the_baseline(grid):
    root, _ = grid
    out = root / "out"
    spec = parse_spec(tomllib.loads(SPEC.replace('baseline = "ce"', 'baseline = "ce"\ncompare = ["kl@kn2"]')), root)
    table = markdown(spec, summarize(spec, plan_runs(spec, out)))
    rank, kl = out / "docs/runs/rank@count2-s0", out / "docs/runs/kl@kn2-s0"
    logprobs = [np.load(d / "test_logprobs.npy").astype(np.float64) for d in (rank, kl)]
    expected = paired_bootstrap(*logprobs, block=len(logprobs[0]) // 50, lines=load_run_lines(rank, len(logprobs[0])))
    header = next(row for row in table.splitlines() if row.startswith("| configuration "))
    assert header.endswith("| Δ vs kl@kn2 | p vs kl@kn2 |")
    cells = {row.split("|")[1].strip(): [cell.strip() for cell in row.split("|")[1:-1]]
             for row in table.splitlines() if row.startswith("| ") and "@" in row.split("|")[1]}
    assert cells["rank@count2"][-2] == f"{expected.difference:+.2f}"
    assert cells["rank@count2"][-1].startswith(f"{expected.p_value:.2g}")
    assert cells["kl@kn2"][-2:] == ["", ""]  # not against itself


def test_tokens_to_reach_by_hand():
    curve = ([100, 200, 300, 400], [50.0, 40.0, 30.0, 35.0])
    assert [tokens_to_reach(curve, target) for target in (60, 40, 31, 30, 29)] == [100, 200, 300, 300, None]


def test_students_that_read_a_share_of_the_text_its_teachers_counted(tmp_path):
    spec_text = SPEC.replace("test_fraction = 0.1", "test_fraction = 0.1\ntrain_share = 0.5").replace(
        "[losses.kl]\nloss = \"kl\"\n", "")
    lines = spec_folder(tmp_path, spec_text, "share.toml", 600)
    result = run_cli("experiment", "share.toml", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "out/docs/data"
    assert (data / "train.txt").read_text(encoding="utf-8") == "".join(lines[:480])
    assert (data / "student.txt").read_text(encoding="utf-8") == "".join(lines[:240])
    tokenizer = NgramModel(tmp_path / "out/docs/model").tokenizer
    student_tokens = tokenizer.encode_file(data / "student.txt")
    # the teachers counted all of train, and ranked the students' half
    counted = NgramModel(tmp_path / "out/docs/teachers/count2/model").meta["n_tokens"]
    assert counted == len(tokenizer.encode_file(data / "train.txt")) > len(student_tokens)
    for teacher in ("count2", "kn2"):
        header = RankFile(tmp_path / f"out/docs/teachers/{teacher}/ranks.bin").header
        assert header["n_positions"] == len(student_tokens) and header["corpus"].endswith("student.txt")
    for run in ("ce-s0", "rank@count2-s0", "rank@kn2-s0"):
        config = json.loads((tmp_path / f"out/docs/runs/{run}/config.json").read_text())
        assert config["train"].endswith("data/student.txt")
    assert json.loads((data / "source.json").read_text())["train_share"] == 0.5


def test_the_difference_against_the_baseline_is_over_the_seeds_both_have():
    base = Line(Config("ce", "ce", None, {}), {0: None, 1: None, 2: None}, test=[5.0, 6.0, 100.0], valid=[0.0] * 3)
    line = Line(Config("rank", "rank", "count2", {}), {1: None, 0: None}, test=[20.0, 10.0], valid=[0.0] * 2)
    assert line.delta(base) == pytest.approx((10 + 20) / 2 - (5 + 6) / 2)


def test_the_test_plot_shows_each_mean_its_seeds_and_their_count():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [Line(Config("ce", "ce", None, {}), {0: None, 1: None}, test=[10.0, 14.0], valid=[0.0] * 2),
             Line(Config("rank", "rank", "count2", {}), {0: None}, test=[9.0], valid=[0.0])]
    figure, axis = plt.subplots()
    _test_bars(axis, lines)
    assert [bar.get_height() for bar in axis.patches] == [12.0, 9.0]
    assert [list(dots.get_ydata()) for dots in axis.lines if dots.get_marker() == "o"] == [[10.0, 14.0], [9.0]]
    assert [text.get_text() for text in axis.texts] == ["12.0\nn=2", "9.0\nn=1"]
    plt.close(figure)


def test_rerun_changes_nothing_and_a_lost_run_comes_back_the_same(grid):
    root, _ = grid
    out = root / "out"
    before = {p: p.read_bytes() for p in (out / "results.csv", out / "results.md", out / "plots/docs-test.png")}
    again = run_cli("experiment", "small.toml", "--out", "out", cwd=root)
    assert again.returncode == 0 and "4 done, 0 to run" in again.stderr, again.stderr
    assert all(p.read_bytes() == data for p, data in before.items())
    shutil.rmtree(out / "docs/runs/rank@kn2-s0")
    redo = run_cli("experiment", "small.toml", "--out", "out", cwd=root)
    assert redo.returncode == 0 and "3 done, 1 to run" in redo.stderr, redo.stderr
    def measured(csv_bytes: bytes) -> list[dict]:  # every column but the wall time
        return [{k: v for k, v in row.items() if k != "wall_s"}
                for row in csv.DictReader(csv_bytes.decode("utf-8").splitlines())]

    assert measured((out / "results.csv").read_bytes()) == measured(before[out / "results.csv"])


def test_an_archive_holds_results_and_run_records_that_give_the_same_results(grid):
    root, _ = grid
    out, archive = root / "out", root / "archive"
    result = run_cli("experiment", "small.toml", "--out", "out", "--results-only", "--archive", "archive", cwd=root)
    assert result.returncode == 0 and "archived 4 finished run(s)" in result.stderr, result.stderr
    assert not list(archive.rglob("*.pt")) and not (archive / "docs/teachers/count2/ranks.bin").exists()
    for run in ("ce-s0", "rank@count2-s0", "rank@kn2-s0", "kl@kn2-s0"):
        for name in ("config.json", "summary.json", "metrics.jsonl", "test_logprobs.npy", "test_lines.npy"):
            assert (archive / "docs/runs" / run / name).read_bytes() == (out / "docs/runs" / run / name).read_bytes()
    again = run_cli("experiment", "small.toml", "--out", "archive", "--results-only", cwd=root)
    assert again.returncode == 0, again.stderr
    for name in ("results.csv", "results.md", "plots/docs-test.png", "plots/docs-valid.png"):
        assert (archive / name).read_bytes() == (out / name).read_bytes(), name
    compared = [run_cli("compare", f"{folder}/docs/runs/rank@kn2-s0", f"{folder}/docs/runs/ce-s0", cwd=root)
                for folder in ("out", "archive")]
    assert compared[0].returncode == 0 and compared[0].stdout.replace("out/", "archive/") == compared[1].stdout


def test_a_later_stage_run_into_the_same_folder_keeps_its_finished_runs_and_archives_only_its_own(grid, tmp_path):
    # Stage 2 of a study: more seeds of a few of the screen's configurations, into the
    # screen's folder, so that the screen's runs are the new stage's first seed.
    root, _ = grid
    shutil.copytree(root / "out", tmp_path / "out")
    (tmp_path / "docs.txt").write_bytes((root / "docs.txt").read_bytes())
    stage = SPEC.replace('name = "small"', 'name = "stage2"').replace("seeds = [0]", "seeds = [0, 1]").replace(
        'weight = 0.1\n', 'weight = 0.1\nteachers = ["count2"]\n').replace('[losses.kl]\nloss = "kl"\n', "")
    (tmp_path / "stage2.toml").write_text(stage, encoding="utf-8")
    kept = {run: (tmp_path / "out/docs/runs" / run / "summary.json").read_bytes() for run in ("ce-s0", "rank@count2-s0")}
    result = run_cli("experiment", "stage2.toml", "--out", "out", "--archive", "archive", cwd=tmp_path)
    assert result.returncode == 0 and "4 runs, 2 done, 2 to run" in result.stderr, result.stderr
    assert all((tmp_path / "out/docs/runs" / run / "summary.json").read_bytes() == data for run, data in kept.items())
    archived = sorted(path.name for path in (tmp_path / "archive/docs/runs").iterdir() if path.is_dir())
    assert archived == ["ce-s0", "ce-s1", "rank@count2-s0", "rank@count2-s1"]
    table = (tmp_path / "archive/results.md").read_text(encoding="utf-8")
    assert table.startswith("# stage2\n") and "rank@kn2" not in table and "| rank@count2 | 2 |" in table


@pytest.mark.parametrize("archive, refused", [("docs.txt", "docs.txt: exists and is not an experiment folder"),
                                              ("new/archive", "new/archive: the archive must be outside"),
                                              ("none/archive", "none: no such directory for the archive"),
                                              (".", ".: the experiment folder new is inside it")])
def test_an_archive_folder_that_cannot_be_written_is_refused_before_any_run(grid, archive, refused):
    root, _ = grid
    result = run_cli("experiment", "small.toml", "--out", "new", "--archive", archive, cwd=root)
    assert result.returncode == 1 and result.stderr.startswith("ngteach: error: " + refused), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (root / "new").exists()


def test_a_changed_spec_is_refused_for_runs_already_done(grid):
    root, _ = grid
    (root / "changed.toml").write_text(SPEC.replace("weight = 0.1", "weight = 0.2"), encoding="utf-8")
    result = run_cli("experiment", "changed.toml", "--out", "out", cwd=root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ngteach: error: out: the spec changed weight of docs/rank@count2-s0, which already ran (0.1 then, 0.2 now); "
        "use another --out, remove that run, or set weight in the spec as it was"]


def test_a_started_run_is_checked_setting_by_setting_defaults_resolved(grid, tmp_path):
    root, _ = grid
    shutil.copytree(root / "out", tmp_path / "out")
    (tmp_path / "docs.txt").write_bytes((root / "docs.txt").read_bytes())
    # the defaults written out (rank's smoothing 0.1, kl's weight 0.5, the optimizer's rate) change nothing ...
    explicit = SPEC.replace("weight = 0.1\n", "weight = 0.1\nsmoothing = 0.1\n").replace(
        'loss = "kl"\n', 'loss = "kl"\nweight = 0.5\nlr = 2e-3\n')
    (tmp_path / "explicit.toml").write_text(explicit, encoding="utf-8")
    again = run_cli("experiment", "explicit.toml", "--out", "out", cwd=tmp_path)
    assert again.returncode == 0 and "4 done, 0 to run" in again.stderr, again.stderr
    # ... while a run that started under another default (here: its config.json says so) is refused
    config = tmp_path / "out/docs/runs/kl@kn2-s0/config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "smoothing": 0.1}), encoding="utf-8")
    (tmp_path / "small.toml").write_text(SPEC, encoding="utf-8")
    refused = run_cli("experiment", "small.toml", "--out", "out", cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        "ngteach: error: out: the spec changed smoothing of docs/kl@kn2-s0, which already ran (0.1 then, 0.0 now); "
        "use another --out, remove that run, or set smoothing in the spec as it was"]
    # a path made from --out that differs says the folder moved, not that the spec changed it
    config.write_text(json.dumps({**json.loads(config.read_text()), "smoothing": 0.0, "model_dir": "old/docs/model"}),
                      encoding="utf-8")
    moved = run_cli("experiment", "small.toml", "--out", "out", cwd=tmp_path)
    assert moved.returncode == 1 and moved.stderr.strip().splitlines() == [
        "ngteach: error: out: docs/kl@kn2-s0 already ran with model_dir 'old/docs/model', and the spec now gives "
        "'out/docs/model' (was the folder or a corpus moved?); run it where it ran, or remove that run"]


@pytest.mark.parametrize("change, refused", [
    (("train = \"docs.txt\"", "train = \"other.txt\""),
     "corpus docs was made with train = 'docs.txt', the spec now has train = 'other.txt'; "
     "use another --out or remove out/docs"),
    (("test_fraction = 0.1", "test = \"other.txt\""),
     "corpus docs was made with test_fraction = 0.1, the spec now has no test_fraction; "
     "use another --out or remove out/docs"),
    (("order = 2\nk = 4\n\n[teachers.kn2]", "order = 3\nk = 4\n\n[teachers.kn2]"),
     "teacher count2 of corpus docs was made with order = 2, the spec now has order = 3; "
     "use another --out or remove out/docs/teachers/count2 and the runs that learn from it"),
    (("k = 4\ndiscount_fallback", "k = 5\ndiscount_fallback"),
     "teacher kn2 of corpus docs was made with k = 4, the spec now has k = 5; "
     "use another --out or remove out/docs/teachers/kn2 and the runs that learn from it"),
    (("discount_fallback = true", "discount_fallback = false"),
     "teacher kn2 of corpus docs was made with discount_fallback = True, the spec now has discount_fallback = False; "
     "use another --out or remove out/docs/teachers/kn2 and the runs that learn from it"),
])
def test_a_changed_corpus_or_teacher_is_refused(grid, change, refused, monkeypatch):
    root, lines = grid
    (root / "other.txt").write_text("".join(lines[:500]), encoding="utf-8")
    monkeypatch.chdir(root)
    with pytest.raises(NgteachError) as error:
        run_experiment(parse_spec(tomllib.loads(SPEC.replace(*change)), root), Path("out"), log=lambda line: None)
    assert str(error.value) == "out: " + refused


def test_a_changed_corpus_text_is_refused_in_one_line(grid):
    root, lines = grid
    docs = root / "docs.txt"
    try:
        docs.write_text("".join(lines + ["one more line\n"]), encoding="utf-8")
        result = run_cli("experiment", "small.toml", "--out", "out", cwd=root)
    finally:
        docs.write_text("".join(lines), encoding="utf-8")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ngteach: error: out: corpus docs was made from another text of train = 'docs.txt' (its sha256 changed); "
        "use another --out or remove out/docs"]


def test_a_rerun_does_not_need_a_source_text_gone_since(grid):
    root, _ = grid
    docs = root / "docs.txt"
    try:
        docs.rename(root / "moved.txt")
        result = run_cli("experiment", "small.toml", "--out", "out", cwd=root)
    finally:
        (root / "moved.txt").rename(docs)
    assert result.returncode == 0, result.stderr
    assert "4 runs, 4 done, 0 to run" in result.stderr


def test_a_folder_made_before_records_gets_them_if_its_splits_are_the_specs(grid, monkeypatch):
    root, _ = grid
    monkeypatch.chdir(root)
    source = Path("out/docs/data/source.json")
    teachers = sorted(Path("out/docs/teachers").glob("*/teacher.json"))
    records = [source, *teachers]
    assert json.loads(source.read_text())["valid_fraction"] == 0.1
    assert [json.loads(p.read_text()) for p in teachers] == [
        {"kind": "count", "order": 2, "k": 4},
        {"kind": "kneser-ney", "order": 2, "k": 4, "discount_fallback": True, "leave_one_out": False}]
    made = {p: p.read_bytes() for p in records}
    for p in records:
        p.unlink()
    check_made(parse_spec(tomllib.loads(SPEC), root), Path("out"))
    assert {p: p.read_bytes() for p in records} == made
    source.unlink()
    try:
        with pytest.raises(NgteachError, match="^out: corpus docs was not split from its entry in the spec; "
                                                "use another --out or remove out/docs$"):
            check_made(parse_spec(tomllib.loads(SPEC.replace("valid_fraction = 0.1", "valid_fraction = 0.2")), root),
                       Path("out"))
        assert not source.exists()
    finally:
        source.write_bytes(made[source])


@pytest.mark.parametrize("docs, change, mentions", [
    (b"a b\x00c\n" * 50, None, "docs.txt: binary data, not text \\(NUL byte at offset 3\\)$"),
    ("caf\xe9\n".encode("latin-1") * 50, None, "docs.txt: not UTF-8 text \\(byte 0xe9 at offset 3\\)$"),
    (b"a line\n" * 100, ("valid_fraction = 0.1", "valid_fraction = 0.001"),
     "^corpus docs: a split would be empty \\(90 train, 0 valid, 10 test lines; "
     "the fractions are of the 100 line\\(s\\) of docs.txt\\)$"),
    (b"a single line\n", None, "^corpus docs: a split would be empty \\(1 train, 0 valid, 0 test lines"),
])
def test_bad_corpus_text_is_refused_before_anything_is_written(docs, change, mentions, tmp_path):
    (tmp_path / "docs.txt").write_bytes(docs)
    spec = parse_spec(tomllib.loads(SPEC.replace(*change) if change else SPEC), tmp_path)
    with pytest.raises(NgteachError, match=mentions):
        run_experiment(spec, tmp_path / "out", log=lambda line: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("jobs, threads, refused", [(0, 1, "--jobs must be at least 1, not 0"),
                                                    (1, 0, "--threads must be at least 1, not 0")])
def test_jobs_and_threads_below_one_are_refused_before_anything_is_written(jobs, threads, refused, tmp_path):
    spec_folder(tmp_path, SPEC, "small.toml", 100)
    with pytest.raises(NgteachError, match=refused + "$"):
        run_experiment(load_spec(tmp_path / "small.toml"), tmp_path / "out", jobs, threads, log=lambda line: None)
    assert not (tmp_path / "out").exists()


def test_results_only_needs_an_experiment_folder_and_out_a_folder(tmp_path):
    from ngteach.training import _run_grid, demo

    spec = parse_spec(tomllib.loads(SPEC), tmp_path)
    run = tmp_path / "run"  # a distill run directory
    run.mkdir()
    (run / "config.json").write_text("{}", encoding="utf-8")
    for out, refused in ((tmp_path / "none", "none: no such experiment folder"),
                         (run, "run: not an experiment folder \\(no experiment.json\\)")):
        with pytest.raises(NgteachError, match=refused + "$"):
            _run_grid(spec, out, 1, 1, None, True)
    assert not (tmp_path / "none").exists() and [p.name for p in run.iterdir()] == ["config.json"]
    (tmp_path / "file").write_text("", encoding="utf-8")
    for results_only in (False, True):
        with pytest.raises(NgteachError, match="file: the output folder is a file$"):
            _run_grid(spec, tmp_path / "file", 1, 1, None, results_only)
    with pytest.raises(NgteachError, match="file: the output folder is a file$"):
        demo(out=tmp_path / "file", jobs=1)


@pytest.mark.parametrize("change, mentions", [
    (("[losses.kl]\nloss = \"kl\"", "[losses.kl]\nloss = \"kl\"\nteachers = [\"count2\"]"), "log-probabilities"),
    (("baseline = \"ce\"", "baseline = \"nope\""), "baseline"),
    (("size = \"tiny\"", "size = \"tiny\"\nwings = 2"), "'wings'"),
    (("kind = \"count\"", "kind = \"oracle\""), "kind"),
    (("kind = \"count\"", "kind = \"infini\""), "unknown key 'order' in \\[teachers.count2\\] of kind infini"),
    (("valid_fraction = 0.1", "valid_fraction = 0.7"), "valid_fraction"),
    (("train = \"docs.txt\"", "train = 5"), "\\[corpora.docs\\] train must be a file name or a named split, not 5"),
    (("seeds = [0]", "seeds = [0, 0]"), "seeds \\[0, 0\\] repeat a seed"),
    # names become folders and files: nothing outside --out, no @ (it joins a loss and its teacher)
    (("[corpora.docs]", "[corpora.\"../escape\"]"), "corpus name '../escape' may hold only letters, digits"),
    (("[teachers.kn2]", "[teachers.\".kn2\"]"), "teacher name '.kn2' may hold only"),
    (("[losses.kl]", "[losses.\"kl@x\"]"), "loss name 'kl@x' may hold only"),
    (("name = \"small\"", "name = \"a/b\""), "the experiment name 'a/b' may hold only"),
    # [student] and [losses] values are checked as distill checks them
    (("size = \"tiny\"", "size = \"foo\""), "\\[losses.ce\\] \\(with \\[student\\]\\): --size must be one of"),
    (("epochs = 1", "epochs = \"one\""), "Invalid value for '--epochs'"),
    (("loss = \"ce\"", "loss = \"foo\""), "\\[losses.ce\\] \\(with \\[student\\]\\): --loss must be one of"),
    (("weight = 0.1", "weight = 0.1\nsmoothing = 2"), "\\[losses.rank\\] .*--smoothing 2"),
    (("weight = 0.1", "weight = 0.1\npartition = \"foo\""), "--partition must be one of"),
    (("window = 20", "window = 20\ntie_weights = \"no\""), "tie_weights must be true or false, not 'no'"),
    (("window = 20", "window = true"), "window takes a value, not true or false"),
    (("weight = 0.1", "weight = 0.1\nk = 5"), "\\[losses.rank\\] k = 5 is more than the k = 4 of teacher 'count2'"),
    (("weight = 0.1", "weight = 0.1\nk = 0"), "\\[losses.rank\\] .*--k must be at least 1"),
    (("weight = 0.1", "weight = 0.1\nmin_order = 3"), "min_order = 3 is above the order 2 of teacher 'count2'"),
    (("size = \"tiny\"", "size = \"tiny\"\nctx = 1"), "unknown key 'ctx' in \\[student\\]"),
    (("loss = \"kl\"", "loss = \"kl\"\ndata_dir = \"x\""), "unknown key 'data_dir' in \\[losses.kl\\]"),
    (("[losses.kl]\nloss = \"kl\"", "[losses.kl]\nloss = \"kl\"\nteachers = [\"kn2\", \"kn2\"]"), "without repeats"),
    (("discount_fallback = true", "discount_fallback = \"yes\""), "discount_fallback must be true or false"),
    (("discount_fallback = true", "leave_one_out = 1"), "leave_one_out must be true or false, not 1"),
    (("discount_fallback = true", "leave_one_out = true"), None),
    (("test_fraction = 0.1", "test_fraction = 0.1\ntrain_share = 0.5\n\n[teachers.loo]\nkind = \"kneser-ney\"\n"
      "leave_one_out = true"), "\\[teachers.loo\\] leave_one_out ranks the text it counted"),
    (("weight = 0.1", "weight = 0.1\nsmoothing = \"teacher\"\nteachers = [\"cl\"]\n\n[teachers.cl]\nkind = "
      "\"cloze\"\norder = 2"), "smoothing = \"teacher\" needs a teacher with log-probabilities; 'cl' \\(cloze\\) has none"),
    (("weight = 0.1", "weight = 0.1\nweight_schedule = \"linear\""), "--weight-schedule must be one of"),
    (("test_fraction = 0.1", "test_fraction = 0.1\ntrain_share = 1.0"), "train_share must be between 0 and 1"),
    (("baseline = \"ce\"", "baseline = \"ce\"\ncompare = [\"nope\"]"), "compare must be a list of the configurations"),
    (("baseline = \"ce\"", "baseline = \"ce\"\ncompare = [\"ce\"]"), "compare names a configuration twice or the baseline"),
    (("baseline = \"ce\"", "baseline = \"ce\"\ncompare = [\"kl@kn2\", \"kl@kn2\"]"), "compare names a configuration twice"),
    (("baseline = \"ce\"", "baseline = \"ce\"\nmetric = \"oov\""), "metric must be one of all, exclude-oov, not 'oov'"),
    (("test_fraction = 0.1", "test_fraction = 0.1\nmin_count = 0"), "min_count must be an integer of at least 1, not 0"),
    (("test_fraction = 0.1", "test_fraction = 0.1\nmin_count = 2.0"), "min_count must be an integer"),
    (("order = 2\nk = 4\n\n[teachers.kn2]", "order = 2\nk = 4\n\n[teachers.kn2]"), None),
])
def test_bad_specs_are_refused_in_one_line(change, mentions, tmp_path):
    text = SPEC.replace(*change)
    assert text != SPEC or mentions is None

    if mentions is None:  # the unchanged spec parses
        assert [c.name for c in parse_spec(tomllib.loads(text), tmp_path).configs] == [
            "ce", "rank@count2", "rank@kn2", "kl@kn2"]
        return
    with pytest.raises(NgteachError, match=mentions) as error:
        parse_spec(tomllib.loads(text), tmp_path)
    assert "\n" not in str(error.value)


BORN_AGAIN = """
[teachers.ba]
kind = "born-again"
run = "ce"
k = 4
"""


@pytest.mark.parametrize("change, mentions", [
    (("run = \"ce\"", "run = \"nope\""), "run 'nope' is none of the configurations without a teacher \\(ce\\)"),
    (("run = \"ce\"", "run = \"rank@count2\""), "run 'rank@count2' is none of"),
    (("run = \"ce\"\n", ""), "needs run"),
    (("run = \"ce\"", "run = \"ce\"\nseed = 3"), "seed must be one of the seeds \\[0\\], not 3"),
    (("run = \"ce\"", "run = \"ce\"\norder = 2"), "unknown key 'order' in \\[teachers.ba\\] of kind born-again"),
])
def test_bad_born_again_teachers_are_refused_in_one_line(change, mentions, tmp_path):

    text = SPEC.replace("[student]", BORN_AGAIN.replace(*change) + "\n[student]")
    with pytest.raises(NgteachError, match=mentions) as error:
        parse_spec(tomllib.loads(text), tmp_path)
    assert "\n" not in str(error.value)


def test_a_born_again_teacher_learns_from_the_first_seed_and_teaches_kl_too(tmp_path):

    spec = parse_spec(tomllib.loads(SPEC.replace("[student]", BORN_AGAIN + "\n[student]")), tmp_path)
    assert (spec.teachers["ba"].run, spec.teachers["ba"].seed) == ("ce", 0)
    assert [c.name for c in spec.configs] == ["ce", "rank@count2", "rank@kn2", "rank@ba", "kl@kn2", "kl@ba"]


def _step(name: str, done: list[str], succeeds: bool = True, needs: tuple = ()) -> Step:
    return Step(name, lambda: done.append(name) or succeeds, lambda cause: done.append(f"{name} skipped: {cause.name}"),
                list(needs))


def test_schedule_does_awaited_steps_first_and_skips_those_behind_a_failure():
    done = []
    source = _step("source", done, succeeds=False)
    teacher = _step("teacher", done, needs=[source])
    student = _step("student", done, needs=[teacher])
    other = _step("other", done)
    failed = schedule([other, student, teacher, source], jobs=1)
    assert done[0] == "source"  # listed last, but the others wait for it
    assert sorted(done[1:]) == ["other", "student skipped: source", "teacher skipped: source"]
    assert failed == {source: source, teacher: source, student: source}


def test_interrupted_runs_go_first_then_every_configuration_seed_by_seed(tmp_path):
    spec = parse_spec(tomllib.loads(SPEC.replace("seeds = [0]", "seeds = [2, 0]")), tmp_path)
    runs = plan_runs(spec, tmp_path / "out")
    (tmp_path / "out/docs/runs/kl@kn2-s0/checkpoints").mkdir(parents=True)
    (tmp_path / "out/docs/runs/kl@kn2-s0/checkpoints/last.pt").write_bytes(b"")
    assert [run.directory.name for run in in_run_order(runs, spec.seeds)] == [
        "kl@kn2-s0", "ce-s2", "rank@count2-s2", "rank@kn2-s2", "kl@kn2-s2", "ce-s0", "rank@count2-s0", "rank@kn2-s0"]
    # two corpora take turns within a seed
    two = SPEC.replace("[teachers.count2]", '[corpora.more]\ntrain = "more.txt"\nvalid_fraction = 0.1\n'
                                            'test_fraction = 0.1\n\n[teachers.count2]')
    spec = parse_spec(tomllib.loads(two), tmp_path)
    assert [run.name for run in in_run_order(plan_runs(spec, tmp_path / "two"), spec.seeds)] == [
        "docs/ce-s0", "more/ce-s0", "docs/rank@count2-s0", "more/rank@count2-s0", "docs/rank@kn2-s0",
        "more/rank@kn2-s0", "docs/kl@kn2-s0", "more/kl@kn2-s0"]


# SPEC's student and losses, with a born-again teacher alone.
BORN_AGAIN_SPEC = """
name = "ba"
seeds = [0]

[corpora.docs]
train = "docs.txt"
valid_fraction = 0.1
test_fraction = 0.1
""" + BORN_AGAIN + "\n" + SPEC[SPEC.index("[student]"):]


@pytest.fixture(scope="module")
def born_again(tmp_path_factory):
    """ce, then the born-again teacher made from ce-s0, then rank@ba and kl@ba."""
    root = tmp_path_factory.mktemp("born-again")
    spec_folder(root, BORN_AGAIN_SPEC, "ba.toml", 600)
    result = run_cli("experiment", "ba.toml", "--out", "out", "--jobs", "2", "--threads", "1", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def test_the_born_again_teacher_is_the_finished_ce_run(born_again, monkeypatch):
    import torch

    from student.neural_teachers import born_again_teacher

    docs = born_again / "out/docs"
    source, made = docs / "runs/ce-s0", docs / "teachers/ba/ranks.bin"
    ranks = RankFile(made)
    assert ranks.header["teacher"]["run"] == str(source.resolve())
    assert ranks.header["teacher"]["checkpoint_sha256"] == file_sha256(source / "checkpoints/best.pt")
    assert ranks.header["gt_first"] and ranks.header["scores"]["kind"] == "logprob"
    # made after its run finished, before the runs that learn from it started
    assert (source / "summary.json").stat().st_mtime <= made.stat().st_mtime
    for config in ("rank@ba", "kl@ba"):
        run = json.loads((docs / f"runs/{config}-s0/config.json").read_text())
        assert run["ranks"].endswith("teachers/ba/ranks.bin")
        assert made.stat().st_mtime <= (docs / f"runs/{config}-s0/config.json").stat().st_mtime
    monkeypatch.chdir(born_again)  # the run's config.json names its model relative to where the experiment ran
    model = NgramModel(docs / "model")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the experiment ranked (--threads 1), so the scores agree bit for bit
    try:
        teacher = born_again_teacher(source, model, torch.device("cpu"))
        write_ranks(teacher, model.tokens(), docs / "expected.bin", k=4, with_scores=True, corpus="")
    finally:
        torch.set_num_threads(threads)
    expected = RankFile(docs / "expected.bin")
    for array in ("ids", "orders", "scores"):
        assert np.array_equal(getattr(ranks, array), getattr(expected, array)), array


def test_born_again_lines_are_compared_like_any_teacher(born_again):
    table = (born_again / "out/results.md").read_text(encoding="utf-8")
    cells = {row.split("|")[1].strip(): row.split("|") for row in table.splitlines() if "@ba" in row}
    assert sorted(cells) == ["kl@ba", "rank@ba"]
    assert cells["rank@ba"][9].strip() == "kl@ba" and cells["kl@ba"][9].strip() == "rank@ba"
    assert all(row[8].strip() and row[10].strip() for row in cells.values())  # p vs ce and vs the other loss


def test_rerunning_a_born_again_grid_changes_nothing_and_a_lost_teacher_comes_back(born_again):
    out = born_again / "out"
    teacher = out / "docs/teachers/ba/ranks.bin"
    made = [teacher, *(out / "docs/runs").glob("*.log"), *(out / "docs/runs").glob("*/summary.json")]
    results = [out / "results.csv", out / "results.md"]
    made_before, results_before = {p: p.stat().st_mtime_ns for p in made}, {p: p.read_bytes() for p in results}
    ranks_before = teacher.read_bytes()
    again = run_cli("experiment", "ba.toml", "--out", "out", "--threads", "1", cwd=born_again)
    assert again.returncode == 0 and "3 done, 0 to run" in again.stderr, again.stderr
    assert {p: p.stat().st_mtime_ns for p in made} == made_before  # nothing made or run again
    assert {p: p.read_bytes() for p in results} == results_before
    teacher.unlink()
    shutil.rmtree(out / "docs/runs/kl@ba-s0")
    redo = run_cli("experiment", "ba.toml", "--out", "out", "--threads", "1", cwd=born_again)
    assert redo.returncode == 0 and "2 done, 1 to run" in redo.stderr, redo.stderr
    assert "docs: making teacher ba (born-again from docs/ce-s0, k 4)" in redo.stderr
    assert teacher.read_bytes() == ranks_before
    assert (out / "docs/runs/kl@ba-s0/summary.json").exists()


def test_a_changed_born_again_teacher_is_refused(born_again, monkeypatch):
    monkeypatch.chdir(born_again)
    record = json.loads(Path("out/docs/teachers/ba/teacher.json").read_text(encoding="utf-8"))
    assert record == {"kind": "born-again", "k": 4, "run": "ce", "seed": 0}
    spec = parse_spec(tomllib.loads(BORN_AGAIN_SPEC.replace("k = 4\n", "k = 3\n", 1)), born_again)
    with pytest.raises(NgteachError, match="^out: teacher ba of corpus docs was made with k = 4, "
                                           "the spec now has k = 3"):
        run_experiment(spec, Path("out"), log=lambda line: None)


def test_a_failed_source_run_leaves_its_students_not_run(tmp_path):
    # more batch columns than the text has tokens: the ce run fails as it starts
    spec_folder(tmp_path, BORN_AGAIN_SPEC.replace('loss = "ce"', 'loss = "ce"\nbatch_size = 100000'), "ba.toml", 200)
    result = run_cli("experiment", "ba.toml", "--out", "out", "--jobs", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert "docs/teachers/ba: not made, docs/ce-s0 failed" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "ngteach: error: 3 run(s) failed or could not run, the first docs/ce-s0")
    why = "not run: its teacher ba could not be made (docs/ce-s0 failed)\n"
    for config in ("rank@ba", "kl@ba"):
        assert (tmp_path / f"out/docs/runs/{config}-s0.log").read_text(encoding="utf-8") == why
        assert f"docs/{config}-s0: {why}" in result.stderr
    assert not (tmp_path / "out/docs/teachers/ba/ranks.bin").exists()


def test_missing_or_broken_spec_gives_one_line(tmp_path):
    assert run_cli("experiment", "none.toml", cwd=tmp_path).stderr == "ngteach: error: none.toml: no such experiment spec\n"
    (tmp_path / "broken.toml").write_text("name = [", encoding="utf-8")
    result = run_cli("experiment", "broken.toml", cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and "TOML" in result.stderr
    with pytest.raises(NgteachError):
        load_spec(tmp_path / "none.toml")


def test_kl_from_the_whole_distribution_ranks_each_batch_from_the_kneser_ney_arpa_file(tmp_path):
    full = SPEC.replace('[losses.kl]\nloss = "kl"', '[losses.kl]\nloss = "kl"\nkl_tail = "full"')
    runs = {run.name: run for run in plan_runs(parse_spec(tomllib.loads(full), tmp_path), tmp_path / "out")}
    args = runs["docs/kl@kn2-s0"].args
    assert args[args.index("--teacher") + 1] == f"arpa:{tmp_path / 'out/docs/teachers/kn2/model.arpa'}"
    assert "--ranks" not in args and "--kl-tail" in args
    assert "--teacher" not in runs["docs/rank@kn2-s0"].args  # the other losses read the ranks file
    # set once in [student], for a grid of KL runs only, it means the same
    only_kl = SPEC.replace("checkpoint_every = 0\n", 'checkpoint_every = 0\nkl_tail = "full"\n').split("[losses.ce]")[0]
    only_kl += '[losses.kl]\nloss = "kl"\nteachers = ["kn2"]\n'
    (run,) = plan_runs(parse_spec(tomllib.loads(only_kl.replace('baseline = "ce"', 'baseline = "kl@kn2"')), tmp_path),
                       tmp_path / "out")
    assert run.args[run.args.index("--teacher") + 1] == f"arpa:{tmp_path / 'out/docs/teachers/kn2/model.arpa'}"
    with pytest.raises(NgteachError, match='kl_tail = "full" needs a kneser-ney teacher .* \'ba\' is born-again'):
        parse_spec(tomllib.loads(full + BORN_AGAIN), tmp_path)


def test_a_teacher_made_before_a_setting_existed_counts_as_made_with_its_default(tmp_path):
    from student.experiment import TEACHER, check_made, teacher_record

    spec = parse_spec(tomllib.loads(SPEC), tmp_path)
    folder = tmp_path / "out/docs/teachers/kn2"
    folder.mkdir(parents=True)
    old = {key: value for key, value in teacher_record(spec.teachers["kn2"]).items() if key != "leave_one_out"}
    (folder / TEACHER).write_text(json.dumps(old), encoding="utf-8")
    check_made(spec, tmp_path / "out")  # leave_one_out = false, as it was
    changed = parse_spec(tomllib.loads(SPEC.replace("discount_fallback = true",
                                                    "discount_fallback = true\nleave_one_out = true")), tmp_path)
    with pytest.raises(NgteachError, match="teacher kn2 of corpus docs was made with leave_one_out = False"):
        check_made(changed, tmp_path / "out")
