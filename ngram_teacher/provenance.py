"""What made an output: the tool's version and git commit, Python and library versions."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .model import TOOL_VERSION

LIBRARIES = ("numpy", "torch", "kenlm", "marisa-trie", "sentencepiece", "typer")


def provenance() -> dict:
    return {"ngteach": TOOL_VERSION, "git_commit": git_commit(), "python": platform.python_version(),
            "platform": platform.platform(), "libraries": {name: _version(name) for name in LIBRARIES}}


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
