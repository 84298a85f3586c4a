"""Progress bars and messages on stderr (standard output is for data): a bar with rate and
ETA on a terminal, silence when piped.

One display holds all the bars of a command (a terminal shows one live display at a
time)::

    with progress_bars() as bars:
        read = bars.add("read corpus.txt", total=size, unit="bytes")
        read(4096)
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Advance = Callable[[int], None]


def say(message: str) -> None:
    """A line for the person at the terminal."""
    print(message, file=sys.stderr)


def _amount(n: float, unit: str) -> str:
    if unit != "bytes":
        return f"{n:,.0f}"
    for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {name}"
    return f"{n:.0f} B"


def rate(speed: float | None, unit: str) -> str:
    """How fast: units per second, or seconds per unit when a unit takes more than a
    second ("84 s/run" rather than "0 runs/s"); nothing before there is a speed."""
    if not speed:
        return ""
    if unit == "bytes":
        return f"{_amount(speed, unit)}/s"
    if speed < 1:
        one = unit[:-2] if unit.endswith(("ches", "shes", "sses")) else unit.removesuffix("s")
        return f"{1 / speed:,.0f} s/{one}"
    return f"{speed:,.0f} {unit}/s"


class Bars:
    """Adds bars to one live display; without a terminal every bar is a no-op."""

    def __init__(self, progress: Progress | None):
        self._progress = progress

    def add(self, description: str, total: int | None, unit: str = "items") -> Advance:
        """A new bar; returns ``advance(n)``. ``unit="bytes"`` prints sizes."""
        progress = self._progress
        if progress is None:
            return lambda n: None
        task = progress.add_task(description, total=total, amounts="", rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            state = next(t for t in progress.tasks if t.id == task)
            done = _amount(state.completed, unit)
            whole = f"/{_amount(state.total, unit)}" if state.total else ""
            progress.update(task, amounts=done + whole, rate=rate(state.speed, unit))

        return advance


@contextmanager
def progress_bars() -> Iterator[Bars]:
    if not sys.stderr.isatty():
        yield Bars(None)
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[amounts]}"), TextColumn("{task.fields[rate]}"),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                        console=Console(stderr=True))
    with progress:
        yield Bars(progress)
