"""Progress reporting: the CLI shows rich progress bars; the Python API is silent unless asked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    def track(self, items: Iterable[T], *, total: int, description: str) -> Iterator[T]: ...

    def note(self, message: str) -> None: ...


class SilentProgress:
    """Shows nothing."""

    def track(self, items: Iterable[T], *, total: int, description: str) -> Iterator[T]:
        yield from items

    def note(self, message: str) -> None:
        pass


class RichProgress:
    """A progress bar per long step, on stderr, so stdout stays clean for scripts."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    def track(self, items: Iterable[T], *, total: int, description: str) -> Iterator[T]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        with Bar(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                 console=self.console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)

    def note(self, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"[dim]{escape(message)}[/]")
