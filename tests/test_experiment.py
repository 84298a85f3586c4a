"""``ngteach experiment``: the grid is planned, run, skipped when done, resumed, tabulated."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpora import NgteachError
from corpora.builtin import python_docs_splits
from ngram_teacher import RankFile
from student.experiment import load_spec, parse_spec
from student.significance import load_run_lines, paired_bootstrap

COMMAND = [sys.executable, "-c", "from ngram_teacher.cli import main; main()"]

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


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The small grid run once: ce, rank@count2, rank@kn2, kl@kn2, one seed each."""
    root = tmp_path_factory.mktemp("grid")
    lines = python_docs_splits()["train"].splitlines(keepends=True)[:1000]
    (root / "docs.txt").write_text("".join(lines), encoding="utf-8")
    (root / "small.toml").write_text(SPEC, encoding="utf-8")
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
    assert json.loads((runs / "ce-s0/environment.json").read_text())["libraries"]["torch"]


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
    assert f"{expected:.2g}" in line.split("|")[6]
    for name in ("docs-valid.png", "docs-test.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_a_changed_spec_is_refused_for_runs_already_done(grid):
    root, _ = grid
    (root / "changed.toml").write_text(SPEC.replace("weight = 0.1", "weight = 0.2"), encoding="utf-8")
    result = run_cli("experiment", "changed.toml", "--out", "out", cwd=root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ngteach: error: out: the spec changed the options of docs/rank@count2-s0, which already ran; "
        "use another --out or remove that run"]


@pytest.mark.parametrize("change, mentions", [
    (("[losses.kl]\nloss = \"kl\"", "[losses.kl]\nloss = \"kl\"\nteachers = [\"count2\"]"), "log-probabilities"),
    (("baseline = \"ce\"", "baseline = \"nope\""), "baseline"),
    (("size = \"tiny\"", "size = \"tiny\"\nwings = 2"), "'wings'"),
    (("kind = \"count\"", "kind = \"oracle\""), "kind"),
    (("valid_fraction = 0.1", "valid_fraction = 0.7"), "valid_fraction"),
    (("order = 2\nk = 4\n\n[teachers.kn2]", "order = 2\nk = 4\n\n[teachers.kn2]"), None),
])
def test_bad_specs_are_refused_in_one_line(change, mentions, tmp_path):
    text = SPEC.replace(*change)
    import tomllib

    if mentions is None:  # the unchanged spec parses
        assert [c.name for c in parse_spec(tomllib.loads(text), tmp_path).configs] == [
            "ce", "rank@count2", "rank@kn2", "kl@kn2"]
        return
    with pytest.raises(NgteachError, match=mentions):
        parse_spec(tomllib.loads(text), tmp_path)


def test_missing_or_broken_spec_gives_one_line(tmp_path):
    assert run_cli("experiment", "none.toml", cwd=tmp_path).stderr == "ngteach: error: none.toml: no such experiment spec\n"
    (tmp_path / "broken.toml").write_text("name = [", encoding="utf-8")
    result = run_cli("experiment", "broken.toml", cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and "TOML" in result.stderr
    with pytest.raises(NgteachError):
        load_spec(tmp_path / "none.toml")
