"""Progress for long work, one style across synthmed, on stderr.

On a terminal: a rich progress bar. Otherwise (a batch job, `nohup`, a CI log), a bar cannot be
drawn, and silence for a 15-minute stage looks like a hang, so each task prints one plain line
when it starts, every `SYNTHMED_PROGRESS_EVERY` seconds (default 30), and when it finishes, with
count, percentage, elapsed time, ETA and the task's fields (loss, rate, ...).
`SYNTHMED_NO_PROGRESS=1` silences both (the test suite sets it).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")

console = Console(stderr=True)

DEFAULT_LOG_EVERY_S = 30.0


def _silenced() -> bool:
    return os.environ.get("SYNTHMED_NO_PROGRESS", "") != ""


def progress_enabled() -> bool:
    """True when a live progress bar is drawn (stderr is a terminal)."""
    return not _silenced() and sys.stderr.isatty()


def progress_logging() -> bool:
    """True when progress is written as periodic plain lines (stderr is not a terminal)."""
    return not _silenced() and not sys.stderr.isatty()


def log_interval() -> float:
    text = os.environ.get("SYNTHMED_PROGRESS_EVERY", "")
    try:
        value = float(text) if text else DEFAULT_LOG_EVERY_S
    except ValueError:
        value = DEFAULT_LOG_EVERY_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_LOG_EVERY_S


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


class LogProgress(Progress):
    """rich's Progress with the live display off, printing one line per task at a steady interval."""

    def __init__(self, *columns: Any, interval: float, **kwargs: Any):
        super().__init__(*columns, disable=True, **kwargs)
        self.interval = interval
        self._origin: dict[TaskID, tuple[float, float]] = {}  # time and count when added
        self._last: dict[TaskID, float] = {}
        self._finished: set[TaskID] = set()

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0,
                 completed: int = 0, visible: bool = True, **fields: Any) -> TaskID:
        task_id = super().add_task(description, start=start, total=total, completed=completed,
                                   visible=visible, **fields)
        now = self.get_time()
        self._origin[task_id] = (now, float(completed))
        self._log(task_id, now, "started")
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def _maybe_log(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        now = self.get_time()
        if task.total is not None and task.completed >= task.total:
            if task_id not in self._finished:
                self._finished.add(task_id)
                self._log(task_id, now, "done")
        elif now - self._last.get(task_id, now) >= self.interval:
            self._log(task_id, now, "")

    def _log(self, task_id: TaskID, now: float, state: str) -> None:
        self._last[task_id] = now
        task = self._tasks[task_id]
        t0, c0 = self._origin[task_id]
        elapsed = now - t0
        parts = [f"{task.description}:"]
        if task.total:
            parts.append(f"{task.completed:g}/{task.total:g} ({100 * task.completed / task.total:.0f}%)")
        else:
            parts.append(f"{task.completed:g}")
        parts.append(f"elapsed {_clock(elapsed)}")
        rate = (task.completed - c0) / elapsed if elapsed > 0 else 0.0
        if task.total and state != "done":
            left = task.total - task.completed
            parts.append(f"eta {_clock(left / rate)}" if rate > 0 else "eta ?")
        for key, value in task.fields.items():
            if isinstance(value, float):
                if math.isfinite(value):
                    parts.append(f"{key} {value:.4g}")
            else:
                parts.append(f"{key} {value}")
        if state:
            parts.append(state)
        print("synthmed: " + " ".join(parts), file=sys.stderr, flush=True)


def make_progress(*extra_columns, quiet: bool = False) -> Progress:
    """A rich Progress with count, elapsed and ETA on a terminal; periodic log lines otherwise.

    `quiet`: shows nothing (a torchrun process other than rank 0, whose progress is rank 0's)."""
    if quiet:
        return Progress(disable=True)
    if progress_logging():
        return LogProgress(interval=log_interval())
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
