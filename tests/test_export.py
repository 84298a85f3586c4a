"""A Transformer student exported to a Hugging Face folder gives the student's log-probabilities."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from corpora import NgteachError

transformers = pytest.importorskip("transformers")

from student import train  # noqa: E402
from student.export import export_hf  # noqa: E402

NGTEACH = [sys.executable, "-m", "ngteach"]


def trained_run(tmp_path, shakespeare, *options: str):
    """A short distill run on the first lines of Tiny Shakespeare."""
    from conftest import head_lines

    (tmp_path / "c.txt").write_text(head_lines(shakespeare, 4000), encoding="utf-8")
    subprocess.run([*NGTEACH, "build", str(tmp_path / "c.txt"), "-o", str(tmp_path / "m")], check=True,
                   capture_output=True)
    run = tmp_path / "run"
    done = subprocess.run([*NGTEACH, "distill", "-m", str(tmp_path / "m"), "--loss", "ce", "--size", "tiny",
                           "--epochs", "1", "--max-tokens", "3000", "--out", str(run), *options],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return run


@pytest.mark.slow
@pytest.mark.parametrize("tie", [True, False])
def test_the_exported_model_gives_the_students_logprobs(tmp_path, shakespeare, tie):
    run = trained_run(tmp_path, shakespeare, "--student", "transformer", *([] if tie else ["--no-tie-weights"]))
    folder = tmp_path / "hf"
    done = subprocess.run([*NGTEACH, "export", str(run), "--out", str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    config = train.RunConfig.load(run / "config.json")
    vocabulary = train.run_model(config, run)
    student = train.load_student(run, config, len(vocabulary.vocab)).eval()

    network = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    line = "First Citizen : we are accounted poor citizens , the patricians zzzunseen good ."
    ids = [vocabulary.vocab.eos_id] + [int(i) for i in vocabulary.tokenizer.encode_text(line)]
    # the Hugging Face tokenizer maps words to the same ids, unknown ones to <unk>
    assert tokenizer(line)["input_ids"] == ids[1:]
    with torch.no_grad():
        ours = torch.log_softmax(student(torch.tensor([ids]))[0].float(), -1)
        theirs = torch.log_softmax(network(torch.tensor([ids])).logits.float(), -1)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    assert np.isclose(float(ours[0, 0].exp().sum()), 1.0)


@pytest.mark.slow
def test_what_does_not_map_is_refused_in_one_line(tmp_path, shakespeare):
    run = trained_run(tmp_path, shakespeare, "--student", "lstm")
    done = subprocess.run([*NGTEACH, "export", str(run), "--out", str(tmp_path / "hf")], capture_output=True,
                          text=True)
    assert done.returncode != 0 and not (tmp_path / "hf").exists()
    assert done.stderr.strip().endswith("an lstm student; only Transformer students export to Hugging Face "
                                        "(as GPT-NeoX)") and len(done.stderr.strip().splitlines()) == 1
    with pytest.raises(NgteachError, match="no such"):
        export_hf(tmp_path / "nothing", tmp_path / "hf")
