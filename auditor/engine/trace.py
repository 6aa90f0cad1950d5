"""The traced forward: which modules run when, how often, and whether a recorded output can stand in for a
module's forward (what the cached prefixes of `auditor.engine.prefix` may swap); and every module's forward time.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from auditor.engine.swap import rebuildable
from auditor.subject import Subject
from auditor.walk.records import iter_tensors
from auditor.walk.stats import unit_dim
from auditor.walk.tree import ModuleTree


@dataclass
class Traced:
    """What one traced forward showed of a module."""

    start: int = -1
    """When its first call began, in the order of all calls' starts and ends (-1: it never ran)."""
    end: int = -1
    """When its last call ended."""
    calls: int = 0
    why_not: str | None = None
    """Why its recorded output cannot stand in for its forward (None: it can)."""
    mutated_later: bool = False
    """Its output is modified in place after it returns (a following in-place ReLU): hand out copies."""
    plain_tensor: bool = False
    """Its output is one tensor (not a tuple or a ModelOutput)."""
    shape: tuple[int, ...] | None = None
    """Shape of its primary output on the traced samples (of its last call)."""
    call_shapes: list[tuple[int, ...]] = field(default_factory=list)
    """Shape of its primary output at each of its calls, in order (one entry per call: `calls` > 1 for a module
    used more than once per forward, whose calls may differ in width)."""
    unit_dim: int | None = None
    """The dimension of its primary output that indexes units (channels, features)."""
    bytes_per_sample: float = 0.0
    input_from: str | None = None
    """The module whose output (or a view of it) was this module's first tensor input, if any: the first
    to return that storage (a convolution before the dropout or flatten that passes it on)."""
    input_from_call: int = 1
    """Which call of `input_from` made that output (a module used more than once per forward)."""


def trace_modules(subject: Subject, tree: ModuleTree) -> dict[str, Traced]:
    """Every module's call order, call count and whether its output can stand in for its forward, from
    one hooked forward over the first two audit samples."""
    traced = {name: Traced() for name in tree.names}
    counter = itertools.count()
    pending: dict[str, list[list[tuple[torch.Tensor, int]]]] = {name: [] for name in tree.names}
    watched: list[tuple[str, torch.Tensor, int]] = []  # also keeps every output alive: no storage is reused
    made_by: dict[int, tuple[str, int]] = {}
    samples = min(2, len(subject))

    def before(name: str, module: nn.Module, args: Any, kwargs: Any) -> None:
        record = traced[name]
        record.calls += 1
        if record.start < 0:
            record.start = next(counter)
        inputs = [(t, t._version) for t in iter_tensors((args, kwargs))]
        pending[name].append(inputs)
        if inputs and record.input_from is None and inputs[0][0].numel():
            made = made_by.get(inputs[0][0].untyped_storage().data_ptr())
            if made is not None:
                record.input_from, record.input_from_call = made

    def after(name: str, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        record = traced[name]
        inputs = pending[name].pop() if pending[name] else []
        record.end = next(counter)
        outputs = list(iter_tensors(output))
        storages = {t.untyped_storage().data_ptr() for t, _ in inputs if t.numel()}
        if record.calls > 1:
            record.why_not = "runs more than once per forward"
        elif any(t._version != version for t, version in inputs):
            record.why_not = "modifies its input in place"
        elif any(t.numel() and t.untyped_storage().data_ptr() in storages for t in outputs):
            record.why_not = "returns its input or a view of it"
        elif not outputs:
            record.why_not = "returns no tensor"
        elif not rebuildable(output):
            record.why_not = f"returns a {type(output).__name__}"
        if outputs:
            primary = outputs[0]
            record.plain_tensor = isinstance(output, torch.Tensor)
            record.shape = tuple(primary.shape)
            record.call_shapes.append(record.shape)
            record.unit_dim = unit_dim(primary, module)
            record.bytes_per_sample = sum(t.numel() * t.element_size() for t in outputs) / samples
            watched.extend((name, t, t._version) for t in outputs)
            for t in outputs:
                if t.numel():
                    made_by.setdefault(t.untyped_storage().data_ptr(), (name, record.calls))

    handles = []
    try:
        for name, module in tree.modules():
            handles.append(module.register_forward_pre_hook(
                lambda m, a, k, name=name: before(name, m, a, k), with_kwargs=True))
            handles.append(module.register_forward_hook(
                lambda m, a, k, o, name=name: after(name, m, a, k, o), with_kwargs=True))
        with torch.no_grad():
            subject.adapter.forward(subject.model, subject.adapter.encode(0, samples))
        for name, tensor, version in watched:
            if tensor._version != version:
                traced[name].mutated_later = True
    finally:
        for handle in handles:
            handle.remove()
    return traced


def time_modules(subject: Subject, tree: ModuleTree, batch_size: int) -> dict[str, float]:
    """Every module's inclusive forward time (all its calls) over one forward of the first audit batch, after
    one warm-up forward: what the cached prefixes would skip, for estimating their cost before they run."""
    seconds = {name: 0.0 for name in tree.names}
    started: dict[str, list[float]] = {name: [] for name in tree.names}
    inputs = subject.first_batch(batch_size).inputs
    handles = []
    try:
        with torch.no_grad():
            subject.adapter.forward(subject.model, inputs)
            for name, module in tree.modules():
                handles.append(module.register_forward_pre_hook(
                    lambda m, a, name=name: started[name].append(time.perf_counter())))
                handles.append(module.register_forward_hook(
                    lambda m, a, o, name=name: seconds.__setitem__(
                        name, seconds[name] + time.perf_counter() - started[name].pop())))
            subject.adapter.forward(subject.model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seconds


__all__ = ["Traced", "time_modules", "trace_modules"]
