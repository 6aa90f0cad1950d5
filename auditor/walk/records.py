"""What the Recorder keeps of a module: its calls' summaries (`CallRecord`), merged over every call of a forward
(`ModuleRecord`), the `<module>@<k>` keys of a module used more than once per forward, and the tensors in any
output (tuples, dicts, ModelOutputs)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from auditor.walk.stats import RunningStats


def iter_tensors(output: Any) -> Iterator[torch.Tensor]:
    """The tensors of a module output: a tensor, or tensors nested in tuples, lists, dicts, ModelOutputs."""
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, Mapping):  # dicts and transformers' ModelOutput
        for value in output.values():
            yield from iter_tensors(value)
    elif isinstance(output, (tuple, list)):
        for value in output:
            yield from iter_tensors(value)


def call_key(name: str, call: int) -> str:
    """The name of one call of a module used more than once per forward: `pool@2` is the 2nd call of `pool`
    (1-based) in each forward. `@` never appears in names Python attributes give; unit rows read `pool@2#3`."""
    return f"{name}@{call}"


def split_call(key: str) -> tuple[str, int | None]:
    """(module name, call) of a `call_key`; (key, None) for a plain module name."""
    name, sep, call = key.rpartition("@")
    if sep and call.isdigit() and name:
        return name, int(call)
    return key, None


@dataclass
class CallRecord:
    """What the walk saw of the k-th call of a module in each forward, over all batches."""

    order: int
    """Position of this call's first completion among the first completions of every module's every call."""
    count: int = 0
    """Forwards in which the call ran."""
    shape: list[int | None] | None = None
    """Output shape of the primary tensor; a dimension that varied between forwards is None."""
    stats: RunningStats = field(default_factory=RunningStats)
    seconds: float = 0.0
    input_sources: set[tuple[str, int] | None] = field(default_factory=set)
    """Activation modules only: (module, call) whose output was this call's input (None: no module's output)."""

    def merge_shape(self, shape: tuple[int, ...]) -> None:
        self.shape = merged_shape(self.shape, list(shape))


def merged_shape(a: list[int | None] | None, b: list[int | None] | None) -> list[int | None] | None:
    """The shape two runs of batches saw: a dimension that differs is None; another rank: []."""
    if a is None:
        return None if b is None else list(b)
    if b is None:
        return a
    if len(a) != len(b):
        return []
    return [x if x == y else None for x, y in zip(a, b, strict=True)]


@dataclass
class ModuleRecord:
    """What the walk saw of one module over all batches: per call within a forward (`per_call`, one entry for a
    module called once), and over all calls (the properties)."""

    calls: int = 0
    """Calls over all forwards."""
    n_outputs: int = 0
    dtype: str | None = None
    per_call: list[CallRecord] = field(default_factory=list)
    """Its 1st, 2nd, ... call of each forward; more than one entry: a module used several times per forward."""
    _combined: tuple[int, RunningStats] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def reused(self) -> bool:
        """Called more than once in some forward."""
        return len(self.per_call) > 1

    @property
    def order(self) -> int | None:
        """Position of the module's first completed call in the forward (execution order; calls of reused modules
        take positions of their own)."""
        return self.per_call[0].order if self.per_call else None

    @property
    def stats(self) -> RunningStats:
        """Output statistics over all calls (units and dead units only where every call has the same units)."""
        if len(self.per_call) == 1:
            return self.per_call[0].stats
        if self._combined is None or self._combined[0] != self.calls:
            self._combined = (self.calls, RunningStats.combine([c.stats for c in self.per_call]))
        return self._combined[1]

    @property
    def shape(self) -> list[int | None] | None:
        """Output shape of the primary tensor; a dimension that varied between calls is None."""
        shape: list[int | None] | None = None
        for i, c in enumerate(self.per_call):
            shape = c.shape if i == 0 else merged_shape(shape, c.shape)
        return shape

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.per_call)

    @property
    def input_sources(self) -> set[str | None]:
        """Activation modules only: the modules whose output was its input in any call (None: no module's)."""
        return {None if s is None else s[0] for c in self.per_call for s in c.input_sources}

    def of_call(self, call: int) -> ModuleRecord:
        """The record of its `call`-th call (1-based) alone, as if that call were a module of its own."""
        c = self.per_call[call - 1]
        return ModuleRecord(calls=c.count, n_outputs=self.n_outputs, dtype=self.dtype, per_call=[c])
