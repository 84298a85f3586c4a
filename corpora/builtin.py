"""Corpora that ship with Python itself, so the toolkit runs without any download.

``python-docs`` is the English prose of the Python reference manual that every CPython
installation carries for ``help()`` (``pydoc_data.topics``): about 80,000 word tokens.
Its topics are joined in name order and its lines cut into train (the first 80%),
valid (the next 10%) and test (the last 10%).
"""
from __future__ import annotations

SPLITS = ("train", "valid", "test")


def python_docs_splits() -> dict[str, str]:
    """The text of each split of ``python-docs``."""
    from pydoc_data.topics import topics

    lines = "\n".join(topics[name].strip("\n") for name in sorted(topics)).split("\n")
    a, b = len(lines) * 8 // 10, len(lines) * 9 // 10
    parts = {"train": lines[:a], "valid": lines[a:b], "test": lines[b:]}
    return {split: "\n".join(part) + "\n" for split, part in parts.items()}


BUILTIN = {"python-docs": python_docs_splits}
