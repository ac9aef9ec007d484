"""Progress bars for long work, one style across synthmed (rich, on stderr)."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")

console = Console(stderr=True)


def progress_enabled() -> bool:
    return os.environ.get("SYNTHMED_NO_PROGRESS", "") == "" and sys.stderr.isatty()


def make_progress(*extra_columns) -> Progress:
    """A rich Progress with count, elapsed and ETA; silent when stderr is not a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        *extra_columns, TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, disable=not progress_enabled(), transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
