"""The Recorder: hooks every module for the length of a `with` block and keeps summaries, not tensors.

One forward pass per batch feeds it; each module's output is summarized the moment the module returns
(an in-place ReLU rewrites its input later), and its inclusive forward time is measured with the hooks' own
cost removed. A module used more than once per forward (a pooling layer or an activation shared by layers
of different widths) is recorded per call, its k-th call of every forward apart from the others
(`ModuleRecord.per_call`, named `<module>@<k>`), and over all its calls where those combine.

Modules that a `Needs` names get a collector besides (per-unit means, pooled representations, top-k,
gradients). Gradients are taken with tensor hooks registered from the forward hook, not module backward
hooks, which fail on in-place and view outputs (pytorch#61519); a tensor hook registered before an
in-place op still receives the gradient with respect to the value before it.
"""

from __future__ import annotations

import time
import weakref
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from auditor.walk.needs import Needs
from auditor.walk.collectors import BatchContext, ModuleCollector, by_unit
from auditor.walk.records import CallRecord, ModuleRecord, iter_tensors
from auditor.walk.stats import CallSummary, Scratch, summarize
from auditor.walk.tree import ModuleTree


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

    def __init__(self, tree: ModuleTree, needs: Needs | None = None, *,
                 clone_outputs: frozenset[str] = frozenset()) -> None:
        """`clone_outputs`: modules whose output a later in-place op rewrites; gradient × activation
        needs their value as it was, so it is copied (only these: a copy of every output costs time)."""
        self.records: dict[str, ModuleRecord] = {name: ModuleRecord() for name in tree.names}
        needs = needs or Needs()
        self.collectors: dict[str, ModuleCollector] = {
            name: ModuleCollector(
                unit_means=name in needs.unit_means,
                pooled=name in needs.pooled,
                pooled_input=name in needs.pooled_inputs,
                top_k=needs.top_k if name in needs.top_k_modules else 0,
                gradients=name in needs.gradients,
                unit_relevance=name in needs.unit_relevance or name in needs.input_relevance,
                relevance_of_input=name in needs.input_relevance,
            )
            for name in tree.names if name in needs.modules()
        }
        self._clone = clone_outputs
        self._batch: BatchContext | None = None
        # Per forward: outputs carrying a gradient hook, by (id, version): a container returning its child's
        # output shares the child's hook; an in-place op (same object, new version) gets a hook of its own.
        self._grad_outputs: dict[tuple[int, int], tuple[torch.Tensor, list[tuple[str, nn.Module, int]]]] = {}
        self._grad_inputs: list[torch.Tensor] = []
        self.forwards = 0
        self._tree = tree
        self._handles: list[RemovableHandle] = []
        self._starts: dict[str, list[tuple[float, float, int, tuple[str, int] | None]]] = {}
        self._call_count: dict[str, int] = {}
        """Per forward: how many calls of each module have started (which call of a reused module this is)."""
        self._overhead = 0.0
        self._scratch = Scratch()
        self._next_order = 0
        # Per forward: a tensor already summarized (a container returning its child's output, dropout
        # in eval mode) is not reduced again. The weak reference proves the storage is still that one.
        self._seen: dict[tuple[Any, ...], tuple[weakref.ref[torch.Tensor], CallSummary]] = {}
        # Per forward: which module returned a tensor, so an activation can name where its input came from.
        self._made_by: dict[tuple[Any, ...], tuple[weakref.ref[torch.Tensor], tuple[str, int]]] = {}
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
        self._starts.clear()
        self._grad_outputs.clear()
        self._grad_inputs.clear()
        self._made_by.clear()
        self._call_count.clear()

    def begin_forward(self, batch: BatchContext | None = None) -> None:
        """Marks the start of one forward pass over a batch (collectors need to know the batch)."""
        if batch is None and self.collectors:
            raise ValueError("a Recorder with collectors needs the BatchContext of every forward")
        self.forwards += 1
        self._seen.clear()
        self._grad_outputs.clear()
        self._grad_inputs.clear()
        self._made_by.clear()
        self._call_count.clear()
        self._starts.clear()
        self._batch = batch

    @property
    def gradient_outputs(self) -> list[torch.Tensor]:
        """The outputs (and inputs, `Needs.input_relevance`) of this forward that carry gradient hooks: what the
        backward must reach."""
        return [*(t for t, _ in self._grad_outputs.values()), *self._grad_inputs]

    def end_forward(self) -> None:
        """Closes the batch (after its backward, when there is one): collectors keep one row per sample."""
        if self._batch is not None:
            for collector in self.collectors.values():
                collector.end_forward(self._batch)
        self._grad_outputs.clear()
        self._grad_inputs.clear()

    def _on_start(self, name: str, module: nn.Module, args: Any) -> None:
        now = time.perf_counter()
        call = self._call_count.get(name, 0) + 1
        self._call_count[name] = call
        source: tuple[str, int] | None = None
        if name in self._activations:
            first = args[0] if args else None
            hit = self._made_by.get(_key(first)) if isinstance(first, torch.Tensor) else None
            source = hit[1] if hit is not None and hit[0]() is not None else None
        self._starts.setdefault(name, []).append((now, self._overhead, call, source))
        collector = self.collectors.get(name)
        if collector is not None and args and isinstance(args[0], torch.Tensor):
            assert self._batch is not None
            if collector.pooled_input:
                collector.on_input(args[0], module, self._batch, call)
            if collector.relevance_of_input and args[0].requires_grad and args[0].is_floating_point():
                self._hook_input_gradient(name, module, args[0], call)
        self._overhead += time.perf_counter() - now

    def _on_output(self, name: str, module: nn.Module, args: Any, output: Any) -> None:
        now = time.perf_counter()
        record = self.records[name]
        starts = self._starts.get(name)
        if starts:
            started, overhead_then, k, source = starts.pop()
            seconds = (now - started) - (self._overhead - overhead_then)
        else:  # no pre-hook saw this call start (hooks registered mid-forward)
            k = self._call_count.get(name, 0) + 1
            self._call_count[name] = k
            seconds, source = 0.0, None
        record.calls += 1
        per_call = record.per_call
        while len(per_call) < k:  # the first time this call of the module completes
            per_call.append(CallRecord(order=self._next_order))
            self._next_order += 1
        call = per_call[k - 1]
        call.count += 1
        call.seconds += seconds
        if name in self._activations:
            call.input_sources.add(source)
        if isinstance(output, torch.Tensor):  # the common case, without the generator
            tensors = [output] if output.is_floating_point() else []
        else:
            tensors = [t for t in iter_tensors(output) if t.is_floating_point()]
        record.n_outputs = max(record.n_outputs, len(tensors))
        if tensors:
            primary = tensors[0]
            call.merge_shape(tuple(primary.shape))
            if record.dtype is None:
                record.dtype = str(primary.dtype).removeprefix("torch.")
            key = _key(primary)
            call.stats.add(self._summary(primary, key, module, need_alive=not call.stats.all_alive))
            self._made_by[key] = (weakref.ref(primary), (name, k))
            for extra in tensors[1:]:  # secondary outputs (e.g. attention weights): only non-finite counts
                if not bool(torch.isfinite(extra).all()):
                    call.stats.nan += int(torch.isnan(extra).sum())
                    call.stats.inf += int(torch.isinf(extra).sum())
            collector = self.collectors.get(name)
            if collector is not None:
                assert self._batch is not None
                collector.on_output(primary, module, self._batch, k)
                if (collector.gradients or collector.unit_relevance) and primary.requires_grad:
                    self._hook_gradient(name, module, primary, k)
        self._overhead += time.perf_counter() - now

    def _hook_gradient(self, name: str, module: nn.Module, output: torch.Tensor, call: int) -> None:
        self.collectors[name].hooked(call)
        key = (id(output), output._version)
        shared = self._grad_outputs.get(key)
        if shared is not None and shared[0] is output:  # a container returning its child's output
            shared[1].append((name, module, call))
            return
        users = [(name, module, call)]
        self._grad_outputs[key] = (output, users)
        act = output.detach().clone() if name in self._clone else output.detach()
        output.register_hook(  # type: ignore[no-untyped-call]  # unannotated in torch
            partial(self._on_gradient, users, act, act._version))

    def _hook_input_gradient(self, name: str, module: nn.Module, tensor: torch.Tensor, call: int) -> None:
        """Relevance of the module's first input (`Needs.input_relevance`): a gradient hook on the input itself,
        which the backward then reaches as it reaches the hooked outputs."""
        self.collectors[name].hooked(call)
        act = tensor.detach()
        self._grad_inputs.append(tensor)
        tensor.register_hook(  # type: ignore[no-untyped-call]  # unannotated in torch
            partial(self._on_input_gradient, name, module, call, act, act._version))

    def _on_input_gradient(self, name: str, module: nn.Module, call: int, act: torch.Tensor, version: int,
                           grad: torch.Tensor) -> None:
        batch = self._batch
        assert batch is not None
        collector = self.collectors[name]
        pair = _per_sample(grad, act, version, batch, what=f"the input of {name!r}", product="input")
        if pair is None:
            collector.not_per_sample(call)
            return
        _add_relevance(collector, call, pair, module, batch)

    def _on_gradient(self, users: list[tuple[str, nn.Module, int]], act: torch.Tensor, version: int,
                     grad: torch.Tensor) -> None:
        batch = self._batch
        assert batch is not None
        pair = _per_sample(grad, act, version, batch, what=f"the output of {users[0][0]!r}", product="activation")
        if pair is None:
            for name, _, call in users:
                self.collectors[name].not_per_sample(call)
            return
        g, a = pair
        norm = gxa = None
        for name, module, call in users:
            collector = self.collectors[name]
            if collector.gradients:
                if norm is None or gxa is None:
                    flat_g, flat_a = g.reshape(batch.size, -1), a.reshape(batch.size, -1)
                    norm, gxa = torch.linalg.vector_norm(flat_g, dim=1), torch.linalg.vecdot(flat_g, flat_a)
                collector.add_gradient(call, norm, gxa)
            if collector.unit_relevance and not collector.relevance_of_input:
                _add_relevance(collector, call, pair, module, batch)

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


def _per_sample(grad: torch.Tensor, act: torch.Tensor, version: int, batch: BatchContext, *, what: str,
                product: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A hooked tensor's gradient and recorded value, both in float32 or wider; None when the gradient has no row
    per sample. Raises when the value was overwritten in place after it was recorded."""
    if act._version != version:
        raise RuntimeError(f"{what} was modified in place after it was recorded; its gradient × {product} cannot be "
                           "computed from the overwritten values")
    if grad.dim() == 0 or grad.shape[0] != batch.size:
        return None
    dtype = torch.promote_types(grad.dtype, torch.float32)
    return grad.detach().to(dtype), act.to(dtype)


def _add_relevance(collector: ModuleCollector, call: int, pair: tuple[torch.Tensor, torch.Tensor], module: nn.Module,
                   batch: BatchContext) -> None:
    """Per sample and unit, gradient × value summed over positions, added to the collector's call."""
    g, a = pair
    view = by_unit(g * a, module, batch)
    if view is not None:
        collector.add_relevance(call, view[0].sum(dim=1))


__all__ = ["Recorder"]
