"""One process at a time prepares a demo model: `cache_lock(folder)` is held while the cache is checked and,
if need be, the model trained and written, so two audits started at once (two `auditor demo`s, parallel test
workers) train it once and never read a half-written folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


@contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Holds `<folder>.lock` (beside the folder, in the cache) for the `with` block."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f"{folder.name}.lock")):
        yield
