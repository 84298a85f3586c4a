"""The many-machine recipe (scripts/distributed_build.py) on a local Dask cluster of two
worker processes: shards built by the workers and merged are the whole corpus's model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from ngram_teacher import build_model  # noqa: E402

from test_merge import same_models  # noqa: E402

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "distributed_build.py"


@pytest.mark.slow
def test_a_two_worker_cluster_builds_the_whole_corpus_model(tmp_path, wt2_valid):
    from conftest import head_lines

    (tmp_path / "c.txt").write_text(head_lines(wt2_valid, 30000), encoding="utf-8")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "c.txt"), "--shards", "5", "--workers", "2",
                           "--order", "3", "--out", str(tmp_path / "merged")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    same_models(tmp_path / "merged", build_model(tmp_path / "c.txt", tmp_path / "whole", order=3))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the shards are gone


def test_cutting_keeps_lines_whole(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from distributed_build import cut_at_lines

    text = "".join(f"line {i} " + "x" * (i % 7) + "\n" for i in range(100))
    (tmp_path / "c.txt").write_text(text, encoding="utf-8")
    pieces = cut_at_lines(tmp_path / "c.txt", 6, tmp_path)
    assert "".join(p.read_text(encoding="utf-8") for p in pieces) == text
    assert all(p.read_text(encoding="utf-8").endswith("\n") for p in pieces) and len(pieces) == 6
