"""Progress reporting: the CLI shows one rich progress bar for the whole audit; the Python API is silent.

The plan knows every pass before the first one runs, so the bar counts forward batches of the whole
audit (`start`), and each pass advances it as it goes (`track`), naming what runs now.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    def start(self, *, total: int, description: str) -> None:
        """Announces the whole audit: `total` forward batches over all passes."""
        ...

    def track(self, items: Iterable[T], *, total: int, description: str) -> Iterator[T]:
        """Yields `items` (one forward batch each), advancing the bar."""
        ...

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        """Counts `steps` forward batches done outside `track` (a sweep's inner loop)."""
        ...

    def note(self, message: str) -> None: ...

    def finish(self) -> None:
        """Closes the bar (the audit is done or failed)."""
        ...


class SilentProgress:
    """Shows nothing."""

    def start(self, *, total: int, description: str) -> None:
        pass

    def track(self, items: Iterable[T], *, total: int, description: str) -> Iterator[T]:
        yield from items

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass


class RichProgress:
    """One bar over the audit's forward batches on stderr (stdout stays clean for scripts)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._bar: Any = None
        self._task: Any = None

    def _columns(self) -> tuple[Any, ...]:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        return (TextColumn("{task.description:<30}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn())

    def start(self, *, total: int, description: str) -> None:
        from rich.progress import Progress as Bar

        self.finish()
        self._bar = Bar(*self._columns(), console=self.console, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def track(self, items: Iterable[T], *, total: int, description: str) -> Iterator[T]:
        if self._bar is None:  # no audit-wide bar: one bar for this step
            self.start(total=total, description=description)
            bar: Any = self._bar  # set by start(); Any: rich is untyped here
            task = self._task
            try:
                for item in items:
                    yield item
                    bar.advance(task)
            finally:
                self.finish()
            return
        self._bar.update(self._task, description=description)
        for item in items:
            yield item
            self._bar.advance(self._task)

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, steps)
            if description is not None:
                self._bar.update(self._task, description=description)

    def note(self, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"[dim]{escape(message)}[/]")

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None
