"""Temporary files and directories that become outputs by an atomic rename.

``tempfile`` creates them private (0600 / 0700); an output must instead get the
permissions any new file of the user gets, so the umask is applied here.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_file(directory: str | os.PathLike | None, prefix: str) -> Path:
    """A new empty file in ``directory`` (None: the system temp dir), mode 0666 & ~umask."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return Path(name)


def temp_dir(directory: str | os.PathLike, prefix: str) -> Path:
    """A new empty directory in ``directory``, mode 0777 & ~umask."""
    path = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=directory))
    path.chmod(0o777 & ~_umask())
    return path
