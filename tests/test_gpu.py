"""The GPU path: training, evaluation and the precisions on a CUDA device (skipped without
one; ``bash bench/gpu.sh`` runs these on a GPU machine)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

NGTEACH = [sys.executable, "-m", "ngteach"]


def distill(tmp_path, name: str, *options: str) -> dict:
    out = tmp_path / name
    done = subprocess.run([*NGTEACH, "distill", "-m", str(tmp_path / "m"), "--size", "tiny", "--epochs", "2",
                           "--max-tokens", "40000", "--out", str(out), "--device", "cuda", *options],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "summary.json").read_text())


@pytest.fixture
def model(tmp_path):
    subprocess.run([*NGTEACH, "build", "python-docs:train", "-o", str(tmp_path / "m")], check=True, capture_output=True)
    return tmp_path / "m"


@pytest.mark.parametrize("student", ["lstm", "transformer"])
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_training_on_a_gpu_learns(tmp_path, model, student, precision):
    summary = distill(tmp_path, f"{student}-{precision}", "--student", student, "--precision", precision,
                      "--loss", "ce")
    vocab = len((model / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert summary["valid_ppl"] < vocab / 4  # far better than the uniform guess
    environment = json.loads((tmp_path / f"{student}-{precision}" / "environment.json").read_text())
    assert environment["device"].startswith("cuda")


def test_a_gpu_run_evaluates_the_same_on_the_cpu(tmp_path, model):
    from student.train import evaluate_text

    distill(tmp_path, "run", "--precision", "fp32", "--loss", "ce")
    text = tmp_path / "t.txt"
    text.write_text("the value of an expression is an object .\n", encoding="utf-8")
    on_gpu, tokens, _ = evaluate_text(tmp_path / "run", text, "cuda")
    on_cpu, same, _ = evaluate_text(tmp_path / "run", text, "cpu")
    assert (tokens == same).all() and np.allclose(on_gpu, on_cpu, atol=1e-3)
