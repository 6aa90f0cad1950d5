"""The Recorder: hooks every module for the length of a `with` block and keeps summaries, not tensors.

One forward pass per batch feeds it; each module's output is summarized the moment the module returns
(an in-place ReLU rewrites its input later), its calls are counted (a module used twice per forward is
reported, not merged), and its inclusive forward time is measured with the hooks' own cost removed.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from auditor.walk.stats import CallSummary, RunningStats, Scratch, summarize
from auditor.walk.tree import ModuleTree


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


@dataclass
class ModuleRecord:
    """What the walk saw of one module over all batches."""

    calls: int = 0
    order: int | None = None
    """Position of the module's first completed call in the forward (execution order)."""
    n_outputs: int = 0
    shape: list[int | None] | None = None
    """Output shape of the primary tensor; a dimension that varied between calls is None."""
    dtype: str | None = None
    stats: RunningStats = field(default_factory=RunningStats)
    seconds: float = 0.0
    input_sources: set[str | None] = field(default_factory=set)
    """Activation modules only: the modules whose output was its input (None: no module's output, e.g.
    the result of a functional op), so zeros it merely passes on are not taken for units it killed."""

    def merge_shape(self, shape: tuple[int, ...]) -> None:
        if self.shape is None:
            self.shape = list(shape)
        elif len(self.shape) != len(shape):
            self.shape = []
        else:
            self.shape = [a if a == b else None for a, b in zip(self.shape, shape, strict=True)]


def _key(t: torch.Tensor) -> tuple[Any, ...]:
    """Identifies a tensor's values within one forward: storage, view and in-place version."""
    return (t.data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype, t._version)


class Recorder:
    """Registers a pre- and a post-forward hook on every module of `tree`; removes exactly those on exit.

    Usage::

        with Recorder(tree) as recorder:
            for batch in batches:
                recorder.begin_forward()
                model(**batch)
        recorder.records["encoder.layer.3.output"].stats.dead_units
    """

    def __init__(self, tree: ModuleTree) -> None:
        self.records: dict[str, ModuleRecord] = {name: ModuleRecord() for name in tree.names}
        self.forwards = 0
        self._tree = tree
        self._handles: list[RemovableHandle] = []
        self._starts: dict[str, list[tuple[float, float]]] = {}
        self._overhead = 0.0
        self._scratch = Scratch()
        self._next_order = 0
        # Per forward: a tensor already summarized (a container returning its child's output, dropout
        # in eval mode) is not reduced again. The weak reference proves the storage is still that one.
        self._seen: dict[tuple[Any, ...], tuple[weakref.ref[torch.Tensor], CallSummary]] = {}
        # Per forward: which module returned a tensor, so an activation can name where its input came from.
        self._made_by: dict[tuple[Any, ...], tuple[weakref.ref[torch.Tensor], str]] = {}
        self._activations = {name for name, node in tree.nodes.items() if node.activation}

    def __enter__(self) -> Recorder:
        try:
            for name, module in self._tree.modules():
                self._handles.append(module.register_forward_pre_hook(partial(self._on_start, name)))
                self._handles.append(module.register_forward_hook(partial(self._on_output, name)))
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:  # returns None: never swallows an error
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        while self._handles:
            self._handles.pop().remove()
        self._seen.clear()
        self._made_by.clear()
        self._starts.clear()

    def begin_forward(self) -> None:
        """Marks the start of one forward pass over a batch."""
        self.forwards += 1
        self._seen.clear()
        self._made_by.clear()

    def _on_start(self, name: str, module: nn.Module, args: Any) -> None:
        now = time.perf_counter()
        self._starts.setdefault(name, []).append((now, self._overhead))
        if name in self._activations:
            first = args[0] if args else None
            hit = self._made_by.get(_key(first)) if isinstance(first, torch.Tensor) else None
            self.records[name].input_sources.add(hit[1] if hit is not None and hit[0]() is not None else None)
        self._overhead += time.perf_counter() - now

    def _on_output(self, name: str, module: nn.Module, args: Any, output: Any) -> None:
        now = time.perf_counter()
        record = self.records[name]
        starts = self._starts.get(name)
        if starts:
            started, overhead_then = starts.pop()
            record.seconds += (now - started) - (self._overhead - overhead_then)
        record.calls += 1
        if record.order is None:
            record.order = self._next_order
            self._next_order += 1
        tensors = [t for t in iter_tensors(output) if t.is_floating_point()]
        record.n_outputs = max(record.n_outputs, len(tensors))
        if tensors:
            primary = tensors[0]
            record.merge_shape(tuple(primary.shape))
            record.dtype = str(primary.dtype).removeprefix("torch.")
            key = _key(primary)
            record.stats.add(self._summary(primary, key, module, need_alive=not record.stats.all_alive))
            self._made_by[key] = (weakref.ref(primary), name)
            for extra in tensors[1:]:  # secondary outputs (e.g. attention weights): only non-finite counts
                if not bool(torch.isfinite(extra).all()):
                    record.stats.nan += int(torch.isnan(extra).sum())
                    record.stats.inf += int(torch.isinf(extra).sum())
        self._overhead += time.perf_counter() - now

    def _summary(self, t: torch.Tensor, tensor_key: tuple[Any, ...], module: nn.Module, *,
                 need_alive: bool) -> CallSummary:
        key = (*tensor_key, type(module).__name__ if t.dim() == 3 else None)
        hit = self._seen.get(key)
        # Reusable if the tensor is still alive (so its storage is the one summarized) and the summary
        # has what this module needs: per-unit activity, unless it was skipped for a module that had
        # already seen every unit fire (a summary without zeros needs none).
        if hit is not None and hit[0]() is not None:
            cached = hit[1]
            if not need_alive or cached.alive is not None or cached.nonzero == t.numel():
                return cached
        summary = summarize(t, module, self._scratch, need_alive=need_alive)
        self._seen[key] = (weakref.ref(t), summary)
        return summary
