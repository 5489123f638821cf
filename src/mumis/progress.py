"""Progress: a rich bar on a terminal, a plain line per finished unit of work elsewhere (logs, CI, pipes)."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Optional

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(description: str, total: Optional[int], enabled: bool = True, min_interval_s: float = 2.0):
    """``with progress_bar("train", n) as advance: advance("status text")`` — one tick per finished unit.

    ``total`` is the run's expected length; None when it is not known in advance (a run that stops on a rule): the
    bar then counts without an ETA, instead of showing the time to a cap the run will rarely reach. Off a terminal
    each finished unit prints one line (at most one every ``min_interval_s``, and always the last)."""
    if not enabled:
        yield lambda status="": None
        return
    if not sys.stderr.isatty() and not sys.stdout.isatty():
        done, last = 0, None

        def line(status: str = "") -> None:
            nonlocal done, last
            done += 1
            now = time.monotonic()
            if last is None or now - last >= min_interval_s or done == total:
                last = now
                of = f"/{total}" if total else ""
                print(f"{description}: {done}{of} {status}".rstrip(), flush=True)

        yield line
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, *((TimeRemainingColumn(),) if total else ()), transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(status: str = "") -> None:
            progress.update(task, advance=1, status=status)

        yield advance
