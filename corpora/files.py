"""Outputs that appear whole, and the JSON files of models and runs.

Outputs are built in a temporary file or directory beside their target and renamed into
place. ``tempfile`` creates those private (0600 / 0700); an output must instead get the
permissions any new file of the user gets, so the umask is applied here.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import NgteachError


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


def replace_dir(new: Path, out: Path) -> None:
    """Put the finished directory ``new`` in place of ``out`` (which may not exist yet)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


@contextmanager
def writing(path: str | os.PathLike, what: str) -> Iterator[None]:
    """An OSError while writing ``what`` to ``path`` (a full disk, say) as one line that
    names them."""
    try:
        yield
    except OSError as e:
        # numpy reports a short write without an errno ("N requested and M written")
        raise NgteachError(f"{path}: cannot write {what} ({e.strerror or f'{e}: is the disk full?'})") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    with writing(path, "the file"):
        tmp = temp_file(path.parent, f".{path.name}.")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a .npy file, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def write_json(path: Path, value: dict) -> None:
    """Write ``value`` as indented JSON, atomically."""
    write_atomic(path, (json.dumps(value, indent=2, default=str) + "\n").encode("utf-8"))


def read_json_object(path: Path, absent: str) -> dict:
    """The JSON object in ``path``; NgteachError(``absent``) if there is no such file, and a
    one-line NgteachError naming the file if it is unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NgteachError(absent) from None
    except (OSError, ValueError) as e:
        raise NgteachError(f"{path}: unreadable ({e})") from None
    if not isinstance(value, dict):
        raise NgteachError(f"{path}: not a JSON object")
    return value


def json_count(value) -> bool:
    """A non-negative JSON integer (not true or false, which Python counts as integers)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def wrong_field(values: dict, fields: dict[str, tuple[Callable[[object], bool], str]]) -> str | None:
    """Why ``values`` does not hold ``fields`` ({key: (check, what its value must be)}), in a
    phrase: the keys it lacks, or the first value that fails its check; None if it holds them.
    Checked where a JSON file is read, so that a hand-edited file fails there, naming the field,
    rather than deep inside a command."""
    missing = [key for key in fields if key not in values]
    if missing:
        return f"missing {', '.join(missing)}"
    for key, (check, expected) in fields.items():
        if not check(values[key]):
            return f"'{key}' must be {expected}, not {json.dumps(values[key])[:40]}"
    return None
