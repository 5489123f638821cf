"""Rich progress bars, switched off in tests and when output is not a terminal-friendly stream."""
from __future__ import annotations

from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True):
    """``with progress_bar("train", n) as advance: advance("status text")`` — one tick per call."""
    if not enabled:
        yield lambda status="": None
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(status: str = "") -> None:
            progress.update(task, advance=1, status=status)

        yield advance
