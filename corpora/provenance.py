"""What made an output: the tool's version and git commit, Python and library versions."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

TOOL_VERSION = "0.1.0"

LIBRARIES = ("numpy", "torch", "kenlm", "marisa-trie", "sentencepiece", "typer")


def provenance() -> dict:
    return {"ngteach": TOOL_VERSION, "git_commit": git_commit(), "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu_model(),
            "libraries": {name: _version(name) for name in LIBRARIES}}


def cpu_model() -> str:
    """The processor's name: floating-point sums may differ between processors (BLAS picks
    its kernels by CPU), so a result records the CPU it was made on."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the source tree this package runs from (+ "-dirty" with uncommitted
    changes), or None outside a git checkout."""
    source = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty else "")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
