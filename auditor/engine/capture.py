"""The shared capture: one hooked forward per batch (plus one backward when a need asks for gradients)
that records every module's statistics and exactly what the analyses' needs name."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from auditor.walk.needs import Needs
from auditor.errors import DataError
from auditor.progress import Progress
from auditor.subject import Batch, Subject
from auditor.walk.collectors import BatchContext, CallCollector, ModuleCollector, TopK
from auditor.walk.recorder import Recorder
from auditor.walk.records import ModuleRecord, call_key, iter_tensors
from auditor.walk.tree import ModuleTree


class CaptureUnavailable(RuntimeError):
    """A need could not be recorded (e.g. the model's backward failed); analyses that need it fail alone."""


@dataclass
class Capture:
    """What the shared pass recorded. Per-sample tensors are on the CPU, in audit-data order."""

    needs: Needs
    records: dict[str, ModuleRecord]
    """Every module by name; a module called more than once per forward also each call alone, as `<name>@<k>`."""
    scores: torch.Tensor
    """(samples, outputs): logits, or a bare encoder's pooled hidden state."""
    forwards: int
    backwards: int
    seconds: float
    targets: torch.Tensor | None = None
    """(samples,) the task's per-sample target, when the capture ran a backward."""
    calls: dict[str, int] = field(default_factory=dict)
    """Modules called more than once per forward -> their calls per forward. Every per-module dict below then
    holds each call under `<name>@<k>` (1-based), and under `<name>` the module over all its calls: statistics,
    top-k and summed gradients always, per-unit means and pooled rows only where all calls have the same units."""
    unit_means: dict[str, torch.Tensor] = field(default_factory=dict)
    """(units,) float64 per module."""
    pooled: dict[str, torch.Tensor] = field(default_factory=dict)
    """(samples, units) per module."""
    pooled_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    """(samples, units) per module: its first positional input, pooled the same way."""
    top_k: dict[str, TopK] = field(default_factory=dict)
    grad_norm: dict[str, torch.Tensor] = field(default_factory=dict)
    """(samples,) L2 norm of the target's gradient at the module's output (a reused module's: summed over calls)."""
    grad_x_act: dict[str, torch.Tensor] = field(default_factory=dict)
    """(samples,) gradient × activation summed over the output (a reused module's: summed over calls)."""
    unit_relevance: dict[str, torch.Tensor] = field(default_factory=dict)
    """(samples, units) gradient × activation summed over positions."""
    no_gradient: frozenset[str] = frozenset()
    """Modules named by a gradient need whose output never took part in autograd."""
    not_per_sample: frozenset[str] = frozenset()
    """Modules named by a gradient need whose output is not batch-first (shared by the batch's samples):
    their gradient has no per-sample value, so none is reported."""
    in_place: frozenset[str] = frozenset()
    """Modules whose output a later in-place op rewrites (their values were copied for gradients)."""
    backward_error: str | None = None
    """Why gradients are missing, when the model's backward failed (the rest of the capture stands)."""

    def call_keys(self, name: str) -> list[str]:
        """`<name>@1` ... `<name>@k` for a module called k > 1 times per forward, else []."""
        return [call_key(name, k) for k in range(1, self.calls.get(name, 0) + 1)]

    def gradients(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(grad_norm, grad_x_act) per module; raises CaptureUnavailable when the backward failed."""
        if self.backward_error is not None:
            raise CaptureUnavailable(f"gradients are unavailable: {self.backward_error}")
        return self.grad_norm, self.grad_x_act

    @classmethod
    def empty(cls, needs: Needs) -> Capture:
        """What an audit without data captures: nothing (the model is never called)."""
        return cls(needs=needs, records={}, scores=torch.empty(0, 0), forwards=0, backwards=0, seconds=0.0)


@contextmanager
def params_require_grad(model: nn.Module) -> Iterator[None]:
    """Lets autograd build a graph through frozen weights; restores every flag exactly on exit.

    Gradients are taken with `torch.autograd.grad` with respect to module outputs only, so no
    parameter's `.grad` is ever written.
    """
    frozen = [p for p in model.parameters() if not p.requires_grad and p.is_floating_point()]
    try:
        for p in frozen:
            p.requires_grad_(True)
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


def _batch_context(batch: Batch) -> BatchContext:
    mask = batch.inputs.get("attention_mask")
    return BatchContext(start=batch.start, size=len(batch), mask=mask)


def find_in_place(subject: Subject, tree: ModuleTree, names: frozenset[str]) -> frozenset[str]:
    """Modules among `names` whose output is rewritten by a later in-place op, from a 2-sample forward."""
    if not names:
        return frozenset()
    seen: dict[str, list[tuple[torch.Tensor, int]]] = {}

    def remember(name: str, module: nn.Module, args: Any, output: Any) -> None:
        first = next((t for t in iter_tensors(output) if t.is_floating_point()), None)
        if first is not None:  # every call of a module used more than once per forward
            seen.setdefault(name, []).append((first, first._version))

    handles = []
    try:
        for name in names:
            handles.append(tree.get(name).register_forward_hook(
                lambda m, a, o, name=name: remember(name, m, a, o)))
        with torch.no_grad():
            subject.adapter.forward(subject.model, subject.adapter.encode(0, min(2, len(subject))))
    finally:
        for handle in handles:
            handle.remove()
    return frozenset(name for name, calls in seen.items() if any(t._version != version for t, version in calls))


@dataclass
class CapturePart:
    """What the hooked pass recorded over some batches (all of them, or one shard of an executor on a cluster),
    before it becomes a Capture: the Recorder's records and collectors, and the batches' scores in order."""

    records: dict[str, ModuleRecord]
    collectors: dict[str, ModuleCollector]
    forwards: int
    sizes: list[int]
    scores: list[torch.Tensor]
    """(batch, outputs) per batch."""
    targets: list[torch.Tensor]
    backwards: int
    backward: bool
    """The pass took gradients (a need asked for them and the task has a target)."""
    in_place: frozenset[str]
    backward_error: str | None = None


def run_capture(subject: Subject, tree: ModuleTree, needs: Needs, *, batch_size: int,
                progress: Progress, description: str = "capturing modules") -> Capture:
    """Runs the model once over every batch with a Recorder on every module; hooks go when it ends."""
    started = time.perf_counter()
    part = record_batches(subject, tree, needs, subject.batches(batch_size), total=subject.n_batches(batch_size),
                          progress=progress, description=description)
    return finish_capture(part, needs, task=subject.task, seconds=time.perf_counter() - started)


def record_batches(subject: Subject, tree: ModuleTree, needs: Needs, batches: Iterable[Batch], *, total: int,
                   progress: Progress, description: str = "capturing modules") -> CapturePart:
    """The hooked pass over `batches` (in audit-data order; each batch keeps its place in the data, so top-k
    sample indices are the data's), hooks removed when it ends."""
    model = subject.model
    backward = needs.backward and subject.head.has_target
    in_place = find_in_place(subject, tree, needs.gradients | needs.unit_relevance) if backward else frozenset()
    scores: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    sizes: list[int] = []
    backward_error: str | None = None
    backwards = 0
    with params_require_grad(model) if backward else nullcontext(), \
            Recorder(tree, needs, clone_outputs=in_place) as recorder:
        # Parameters of modules whose output is rewritten in place: the backward must reach past the
        # in-place op for their tensor hook to fire, and their own weights are upstream of it.
        upstream = [p for name in in_place for p in tree.get(name).parameters() if p.requires_grad]
        for batch in progress.track(batches, total=total, description=description):
            recorder.begin_forward(_batch_context(batch))
            sizes.append(len(batch))
            grad_now = backward and backward_error is None
            inputs = batch.inputs  # no gradient w.r.t. the input: at 224² it costs as much as a conv layer
            with torch.enable_grad() if grad_now else torch.no_grad():
                try:
                    out = subject.adapter.forward(model, inputs)
                except Exception as err:
                    message = " ".join(str(err).split())[:300]
                    raise DataError(f"the model failed on samples {batch.start}..{batch.stop - 1}: "
                                    f"{type(err).__name__}: {message}") from err
                if grad_now:
                    try:
                        target = subject.head.target(out, batch.labels)
                        wrt = recorder.gradient_outputs + upstream
                        if target.requires_grad and wrt:
                            torch.autograd.grad(target.sum(), wrt, allow_unused=True)
                        targets.append(target.detach().float().cpu())
                        backwards += 1
                    except Exception as err:  # a model whose backward fails loses its gradients, not the audit
                        backward_error = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
            recorder.end_forward()
            scores.append(out.detach().float().cpu())
    return CapturePart(records=dict(recorder.records), collectors=dict(recorder.collectors),
                       forwards=recorder.forwards, sizes=sizes, scores=scores, targets=targets, backwards=backwards,
                       backward=backward, in_place=in_place, backward_error=backward_error)


def finish_capture(part: CapturePart, needs: Needs, *, task: str, seconds: float) -> Capture:
    """The Capture of a hooked pass: per-call and per-module dicts from the collectors' pieces."""
    backward_error = part.backward_error
    capture = Capture(needs=needs, records=dict(part.records),
                      scores=torch.cat(part.scores) if part.scores else torch.empty(0, 0), forwards=part.forwards,
                      backwards=part.backwards, seconds=seconds, in_place=part.in_place,
                      backward_error=backward_error)
    if part.backward and backward_error is None:
        capture.targets = torch.cat(part.targets)
    elif needs.backward and backward_error is None:
        backward_error = f"the {task} task has no decision to differentiate"
        capture.backward_error = backward_error
    _collect(capture, part, part.sizes, gradients=backward_error is None)
    return capture


def _collect(capture: Capture, recorder: CapturePart, sizes: list[int], *, gradients: bool) -> None:
    """The collectors' per-call pieces as the capture's dicts: a module called once under its name; one called k
    times per forward under `<name>@1` ... `<name>@k`, and under its name what its calls make together."""
    for name, record in recorder.records.items():
        if record.reused:
            capture.calls[name] = len(record.per_call)
            for k in range(1, len(record.per_call) + 1):
                capture.records[call_key(name, k)] = record.of_call(k)
    no_gradient: list[str] = []
    shared: list[str] = []
    for name, c in recorder.collectors.items():
        reused = len(c.calls) > 1
        for k, call in enumerate(c.calls, start=1):
            key = call_key(name, k) if reused else name
            _collect_call(capture, key, call, c, sizes, gradients=gradients, no_gradient=no_gradient, shared=shared)
        if reused:
            _combine_calls(capture, name, c, sizes, gradients=gradients, no_gradient=no_gradient, shared=shared)
        elif not c.calls and gradients and (c.gradients or c.unit_relevance):
            no_gradient.append(name)  # it never produced a floating-point output
    capture.no_gradient = frozenset(no_gradient)
    capture.not_per_sample = frozenset(shared)


def _collect_call(capture: Capture, key: str, c: CallCollector, module: ModuleCollector, sizes: list[int], *,
                  gradients: bool, no_gradient: list[str], shared: list[str]) -> None:
    if c.unit_means is not None and c.unit_means.total is not None:
        capture.unit_means[key] = c.unit_means.mean
    if module.pooled and c.pooled_batches and all(p.shape[1] for p in c.pooled_batches):
        capture.pooled[key] = torch.cat(c.pooled_batches)
    if module.pooled_input and c.pooled_input_batches and all(p.shape[1] for p in c.pooled_input_batches):
        capture.pooled_inputs[key] = torch.cat(c.pooled_input_batches)
    if c.top_k is not None and c.top_k.values is not None:
        capture.top_k[key] = c.top_k
    if not gradients:
        return
    if (module.gradients or module.unit_relevance) and not c.grad_hooked:
        no_gradient.append(key)
    if not c.per_sample:
        shared.append(key)
        return
    if module.gradients and c.grad_hooked:
        capture.grad_norm[key] = torch.cat(c.grad_norm_batches)
        capture.grad_x_act[key] = torch.cat(c.grad_x_act_batches)
    if module.unit_relevance and c.grad_hooked:
        relevance = c.relevance(sizes)
        if relevance is not None:
            capture.unit_relevance[key] = relevance


def _combine_calls(capture: Capture, name: str, module: ModuleCollector, sizes: list[int], *, gradients: bool,
                   no_gradient: list[str], shared: list[str]) -> None:
    """A reused module as a whole: per-unit means and pooled rows over all its calls (only where they have the
    same units), its top-k over all calls, and its gradients summed over calls (its total contribution)."""
    calls = module.calls
    keys = [call_key(name, k) for k in range(1, len(calls) + 1)]
    means = [c.unit_means for c in calls if c.unit_means is not None and c.unit_means.total is not None]
    if means and len(means) == len(calls) and len({m.total.shape for m in means if m.total is not None}) == 1:
        total = sum((m.total for m in means if m.total is not None), torch.zeros(()))
        count = sum((m.count for m in means if m.count is not None), torch.zeros(()))
        capture.unit_means[name] = (total / count.clamp_min(1)).cpu()
    for flag, per_call, out in ((module.pooled, [c.pooled_batches for c in calls], capture.pooled),
                                (module.pooled_input, [c.pooled_input_batches for c in calls], capture.pooled_inputs)):
        combined = _mean_over_calls(per_call) if flag else None
        if combined is not None:
            out[name] = combined
    if module.whole_top_k is not None and module.whole_top_k.values is not None:
        capture.top_k[name] = module.whole_top_k
    if not gradients:
        return
    if (module.gradients or module.unit_relevance) and not any(c.grad_hooked for c in calls):
        no_gradient.append(name)
    if any(k in shared for k in keys):
        shared.append(name)
        return
    hooked = [k for k, c in zip(keys, calls, strict=True) if c.grad_hooked]
    if module.gradients and hooked:
        capture.grad_norm[name] = sum((capture.grad_norm[k] for k in hooked if k in capture.grad_norm),
                                      torch.zeros(sum(sizes)))
        capture.grad_x_act[name] = sum((capture.grad_x_act[k] for k in hooked if k in capture.grad_x_act),
                                       torch.zeros(sum(sizes)))
    relevance = [capture.unit_relevance[k] for k in hooked if k in capture.unit_relevance]
    if module.unit_relevance and relevance and len({r.shape for r in relevance}) == 1:
        capture.unit_relevance[name] = sum(relevance[1:], relevance[0])


def _mean_over_calls(per_call: list[list[torch.Tensor]]) -> torch.Tensor | None:
    """Per batch, the mean of the calls' pooled rows (the calls that ran on it); None when the calls differ in
    width, or a batch had no call with units."""
    widths = {p.shape[1] for batches in per_call for p in batches if p.shape[1]}
    if len(widths) != 1:
        return None
    rows = []
    for parts in zip(*per_call, strict=True):
        present = [p for p in parts if p.shape[1]]
        if not present:
            return None
        rows.append(sum(present[1:], present[0]) / len(present))
    return torch.cat(rows)
