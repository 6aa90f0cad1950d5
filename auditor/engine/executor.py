"""Executors run the plan's passes. `LocalExecutor` runs them here, one after another; `RayExecutor`
(`auditor.engine.ray_executor`, imported only when asked for) runs them on the actors of a Ray cluster and
returns the same results (docs/scale.md).

Besides the passes the engine knows (captures, patched passes), an analysis hands the executor work of its
own with `map`: a module-level function of (subject, item) and a list of items (data: which samples, which
randomization step), run on a model replica per item. The function must leave the replica as it found it: a
task that changes weights works on its own copy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import torch

from auditor.engine.capture import Capture, run_capture
from auditor.walk.needs import Needs
from auditor.engine.passes import PatchedPass
from auditor.engine.prefix import PrefixRun, run_with_cached_prefixes
from auditor.engine.trace import Traced
from auditor.progress import Progress
from auditor.subject import Subject
from auditor.walk.patch import Patch, patch_many
from auditor.walk.tree import ModuleTree

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Executor(Protocol):
    def capture(self, needs: Needs, *, subject: Subject | None = None, patches: Mapping[str, Patch] | None = None,
                label: str = "") -> Capture:
        """Runs a capture pass: the shared one by default; over other inputs for the same model (`subject`, e.g.
        a probe set), and/or with modules patched (e.g. re-initialized weights), when asked."""
        ...

    def scores(self, passes: Sequence[PatchedPass]) -> list[torch.Tensor]:
        """Runs each patched pass over the audit data; returns its (samples, outputs) scores, in order."""
        ...

    def patched_run(self, passes: Sequence[PatchedPass], *, traced: Mapping[str, Traced],
                    seconds: Mapping[str, float], cache_bytes: int, stack: int) -> PrefixRun:
        """Runs the patched passes on cached prefixes (`run_with_cached_prefixes`): their scores, in order,
        and how each ran."""
        ...

    def map(self, fn: Callable[[Subject, ItemT], ResultT], items: Sequence[ItemT], *, description: str,
            steps: Sequence[int] | None = None) -> list[ResultT]:
        """`fn(subject, item)` for each item, on a replica of the audited subject; the results in item order.

        `fn` is a module-level function (a cluster ships a reference to it, not a closure) and each item is
        data that pickles; the items are independent, so an executor may run them anywhere, in any order, and
        run one again after a fault: `fn` must be a function of its item and the subject alone, and must not
        change the replica (a task that changes weights works on a copy). `steps`: what each item counts on
        the progress bar (forward batches; 1 each by default)."""
        ...

    def close(self) -> None:
        """Releases what the executor holds (a cluster's actors); the audit is over."""
        ...


class LocalExecutor:
    """Runs every pass in this process, batch by batch, with the audit's progress bar."""

    def __init__(self, subject: Subject, tree: ModuleTree, *, batch_size: int, progress: Progress) -> None:
        self.subject = subject
        self.tree = tree
        self.batch_size = batch_size
        self.progress = progress

    def capture(self, needs: Needs, *, subject: Subject | None = None, patches: Mapping[str, Patch] | None = None,
                label: str = "") -> Capture:
        subject = subject or self.subject
        with patch_many(subject.model, patches or {}):
            return run_capture(subject, self.tree, needs, batch_size=self.batch_size, progress=self.progress,
                               description=label or "capturing modules")

    def scores(self, passes: Sequence[PatchedPass]) -> list[torch.Tensor]:
        subject, results = self.subject, []
        for planned in passes:
            chunks = []
            with torch.no_grad(), patch_many(subject.model, planned.patches):
                for batch in self.progress.track(subject.batches(self.batch_size),
                                                 total=subject.n_batches(self.batch_size),
                                                 description=planned.label or "patched pass"):
                    chunks.append(subject.adapter.forward(subject.model, batch.inputs).float().cpu())
            results.append(torch.cat(chunks))
        return results

    def patched_run(self, passes: Sequence[PatchedPass], *, traced: Mapping[str, Traced],
                    seconds: Mapping[str, float], cache_bytes: int, stack: int) -> PrefixRun:
        return run_with_cached_prefixes(self.subject, self.tree, passes, traced=traced, batch_size=self.batch_size,
                                        budget_bytes=cache_bytes, progress=self.progress, seconds=seconds,
                                        stack=stack)

    def map(self, fn: Callable[[Subject, ItemT], ResultT], items: Sequence[ItemT], *, description: str,
            steps: Sequence[int] | None = None) -> list[ResultT]:
        results = []
        for item, count in zip(items, step_counts(items, steps), strict=True):
            results.append(fn(self.subject, item))
            self.progress.advance(count, description=description)
        return results

    def close(self) -> None:
        pass


def step_counts(items: Sequence[object], steps: Sequence[int] | None) -> list[int]:
    """What each item of a `map` counts on the progress bar: `steps`, else 1 each."""
    if steps is None:
        return [1] * len(items)
    if len(steps) != len(items):
        raise ValueError(f"map: {len(steps)} step counts for {len(items)} items")
    return list(steps)

