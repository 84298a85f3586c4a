"""Progress bars on stderr: a bar with rate and ETA on a terminal, silence when piped."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

Advance = Callable[[int], None]


def _enabled() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "items") -> Iterator[Advance]:
    """Yield ``advance(n)``; shows ``description`` with a bar, rate and ETA.

    ``unit="bytes"`` shows sizes and transfer speed; any other unit shows ``done/total``
    and ``unit/s``.
    """
    if not _enabled():
        yield lambda n: None
        return
    if unit == "bytes":
        columns = [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns = [MofNCompleteColumn(), TextColumn("{task.fields[rate]}")]
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), *columns,
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=False)
    with progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            speed = progress.tasks[0].speed
            if unit != "bytes" and speed:
                progress.update(task, rate=f"{speed:,.0f} {unit}/s")

        yield advance
