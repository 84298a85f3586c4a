"""Shared fixtures: where the real corpora live, and writers of small corpora."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# ``reference`` (the naive implementations) is imported by name from the test modules.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# The project's shared data lives beside the repository: <root>/../shared/corpora.
SHARED_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"

WT2_VALID = SHARED_CORPORA / "wikitext-2" / "valid.txt"
WT2_TEST = SHARED_CORPORA / "wikitext-2" / "test.txt"
SHAKESPEARE = SHARED_CORPORA / "tinyshakespeare" / "input.txt"


def shared_corpus(path: Path) -> Path:
    """``path`` if the shared corpus is there, else skip the test."""
    if not path.is_file():
        pytest.skip(f"shared corpus {path} is not available")
    return path


@pytest.fixture
def shared_corpora() -> Path:
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"shared corpora folder {SHARED_CORPORA} is not available")
    return SHARED_CORPORA


@pytest.fixture
def wt2_valid() -> Path:
    return shared_corpus(WT2_VALID)


@pytest.fixture
def wt2_test() -> Path:
    return shared_corpus(WT2_TEST)


@pytest.fixture
def shakespeare() -> Path:
    return shared_corpus(SHAKESPEARE)


@pytest.fixture(params=["packed", "packed-in-chunks", "order-by-order"])
def counting(request, monkeypatch) -> str:
    """Each way the count tables can be made (ngram_teacher.kernels): one sort of packed
    keys, the same in many chunks of first words, and the order-by-order kernel used where
    the keys do not fit in 64 bits. All must give the same tables."""
    from ngram_teacher import kernels
    if request.param == "packed-in-chunks":
        monkeypatch.setattr(kernels, "KEY_CHUNK", 1)  # a quarter of the keys at a time
    elif request.param == "order-by-order":
        monkeypatch.setattr(kernels, "packed_bits", lambda max_id, order: None)
    return request.param


@pytest.fixture
def write_corpus(tmp_path):
    """``write_corpus(text_or_bytes, name="corpus.txt")`` -> path of a new file in tmp_path.

    Text is written as UTF-8 bytes exactly as given (no newline translation)."""

    def write(content: str | bytes, name: str = "corpus.txt") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


@pytest.fixture
def tiny_corpus(write_corpus) -> Path:
    """The hand-worked corpus of several tests: 12 tokens, 3 lines."""
    return write_corpus("a b c\na b d\na b c\n")


def same_model_files(a: Path, b: Path) -> tuple[dict, dict]:
    """Assert that two model directories hold the same files, byte for byte, but for
    meta.json; return both meta.json objects, for the caller to compare."""
    import json

    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for name in names:
        if name != "meta.json":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return json.loads((a / "meta.json").read_text()), json.loads((b / "meta.json").read_text())


def head_lines(path: Path, n_tokens: int) -> str:
    """The first whole lines of ``path`` holding at least ``n_tokens`` tokens
    (words plus one <eos> per line), as text with '\\n' line ends."""
    lines, total = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            total += len(line.split()) + 1
            if total >= n_tokens:
                break
    return "".join(lines)


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 64 KiB tmpfs: a disk that fills up (skipped where none can be mounted)."""
    import subprocess

    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode(errors='replace').strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
