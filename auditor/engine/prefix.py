"""Cached prefixes: patched passes that do not redo the work before the first patched module.

Patching a module changes nothing that runs before it, yet the naive loop runs the whole model once per
patched pass. Here one clean recording pass keeps, batch by batch, the outputs of the modules that run
before the patched ones (within a memory budget). Each patched pass then swaps those modules' `forward`
for "return this batch's recorded output" for its length, so an ordinary call of the model runs only
what follows: the layers after the patched one and, inside its own layer, the sub-blocks after it. A
patched module whose patch replaces its output outright (zeros, a constant, or a function of its
recorded output) is not run either. Every swapped `forward` is restored in `finally`, also when the
model raises, and the rest of the network sees the very values it would have seen: results are those
of `LocalExecutor.scores` on the same passes.

What may be swapped is read from one traced forward on two samples (`trace_modules`): a module's output
can stand in for its forward when the module runs once per forward, does not modify its inputs in
place, and does not return its input or a view of it. Where nothing before the patched module
qualifies, the pass runs the full model, and its route says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from auditor.engine.passes import PatchedPass
from auditor.engine.prefix_plan import PassRoute, Plan, outermost, plan_pass, route_of
from auditor.engine.stacking import run_stacked, stack_groups
from auditor.engine.swap import copy_value, forward_replaced, nbytes
from auditor.engine.trace import Traced
from auditor.progress import Progress
from auditor.subject import Subject
from auditor.walk.patch import patch_many, replace_output
from auditor.walk.records import iter_tensors
from auditor.walk.tree import ModuleTree


@dataclass
class PrefixRun:
    """The scores of every pass, in order, and how each ran."""

    scores: list[torch.Tensor]
    routes: list[PassRoute]
    cached: dict[str, int] = field(default_factory=dict)
    """Modules whose outputs were recorded, with their bytes over all batches."""
    budget_bytes: int = 0
    evicted: list[str] = field(default_factory=list)
    """Modules dropped from the cache because the budget ran out during recording."""
    clean_scores: torch.Tensor | None = None
    """The unpatched model's scores, from the recording pass (None when nothing was recorded)."""
    seconds: float = 0.0
    record_seconds: float = 0.0
    pass_seconds: list[float] = field(default_factory=list)
    stacked: int = 0
    """Passes that shared a forward with others (stacked copies of the batch)."""
    forwards: int = 0
    """Forwards over the data the passes took (a stacked group takes one)."""


def run_with_cached_prefixes(subject: Subject, tree: ModuleTree, passes: Sequence[PatchedPass], *,
                             traced: Mapping[str, Traced], batch_size: int, budget_bytes: int,
                             progress: Progress, seconds: Mapping[str, float] | None = None,
                             stack: int = 1) -> PrefixRun:
    """Runs every patched pass over the audit data; returns what `LocalExecutor.scores` would, faster.

    Args:
        subject: the model and its data.
        tree: the model's modules.
        passes: the patched passes, each independent of the others.
        traced: `trace_modules(subject, tree)`.
        batch_size: the audit's batch size (the recorded outputs are per batch).
        budget_bytes: at most this many bytes of recorded outputs (0: every pass runs the whole model,
            except that a patched module whose patch is a constant still does not run).
        progress: advanced by one step per forward batch.
        seconds: inclusive forward time per module (the capture's), to rank what is worth recording.
        stack: up to this many passes share one forward, each on its own copy of the batch stacked along the
            batch dimension with its own patch (passes that patch one module's output, on the same route);
            only where the model treats the copies alike (`stacking_check`). Scores then equal the one-at-a-time
            ones within float rounding (a bigger batch sums in another order), not bit for bit.
    """
    started = time.perf_counter()
    plans = [plan_pass(p.patches, traced) for p in passes]
    n = len(subject)
    weights = {name: max(float((seconds or {}).get(name, 0.0)), 1e-9) for name in tree.names}

    chosen = _choose_recorded(plans, traced, weights, samples=n, budget_bytes=budget_bytes)
    shapes_of = {p.first for p in plans if p.first is not None and p.direct == "constant"}
    recording = _record(subject, tree, chosen, shapes_of, batch_size=batch_size, budget_bytes=budget_bytes,
                        progress=progress)
    store, sizes, shapes, evicted, clean = (recording.store, recording.sizes, recording.shapes, recording.evicted,
                                            recording.clean)

    recorded = time.perf_counter()
    routes = [route_of(plan, store, traced, weights) for plan in plans]
    results: list[torch.Tensor | None] = [None] * len(passes)
    pass_seconds = [0.0] * len(passes)
    groups = stack_groups(passes, plans, routes, store, traced, subject, batch_size, stack)
    for group in groups:
        begun = time.perf_counter()
        if len(group) == 1:
            i = group[0]
            results[i] = _run_pass(subject, passes[i], plans[i], routes[i], store, shapes, batch_size=batch_size,
                                   traced=traced, progress=progress)
        else:
            for i, scores in zip(group, run_stacked(subject, [passes[i] for i in group], plans[group[0]],
                                                     routes[group[0]], store, shapes, batch_size=batch_size,
                                                     traced=traced, progress=progress), strict=True):
                results[i] = scores
        for i in group:
            pass_seconds[i] = (time.perf_counter() - begun) / len(group)
    return PrefixRun(scores=[r for r in results if r is not None], routes=routes, cached=dict(sizes),
                     budget_bytes=budget_bytes, evicted=evicted, clean_scores=torch.cat(clean) if clean else None,
                     seconds=time.perf_counter() - started, record_seconds=recorded - started,
                     pass_seconds=pass_seconds, stacked=sum(len(g) for g in groups if len(g) > 1),
                     forwards=len(groups))


def _choose_recorded(plans: Sequence[Plan], traced: Mapping[str, Traced], weights: Mapping[str, float], *,
                     samples: int, budget_bytes: int) -> list[str]:
    """What to record, most useful first: the modules each pass could replace (its outermost eligible ones),
    ranked by the time they save per byte, then the first patched modules whose patch reads their output; as
    many as the estimated bytes fit in the budget."""
    benefit: dict[str, float] = {}
    for plan in plans:
        for name in outermost(plan.eligible):
            benefit[name] = benefit.get(name, 0.0) + weights[name]
        if plan.first is not None and plan.direct == "recorded":
            benefit[plan.first] = benefit.get(plan.first, 0.0) + weights[plan.first]
    estimate = {name: traced[name].bytes_per_sample * samples for name in benefit}
    ranked = sorted(benefit, key=lambda name: -benefit[name] / max(estimate[name], 1.0))
    chosen, planned_bytes = [], 0.0
    for name in ranked:
        if planned_bytes + estimate[name] <= budget_bytes:
            chosen.append(name)
            planned_bytes += estimate[name]
    return chosen


Shape = tuple[tuple[int, ...], torch.dtype, torch.device]


@dataclass
class _Recording:
    store: dict[str, list[Any]]
    """Per recorded module, its output for each batch."""
    sizes: dict[str, int]
    shapes: dict[str, list[Shape]]
    """Per module whose patch is a constant, its output's shape for each batch."""
    evicted: list[str]
    clean: list[torch.Tensor]
    """The unpatched model's scores, per batch."""


def _record(subject: Subject, tree: ModuleTree, chosen: Sequence[str], shapes_of: set[str], *, batch_size: int,
            budget_bytes: int, progress: Progress) -> _Recording:
    """One clean hooked pass over the data keeping the outputs of `chosen` (dropping the least useful when the
    estimate was short of the budget) and the output shapes of `shapes_of`; hooks removed also on error."""
    priority = {name: i for i, name in enumerate(chosen)}
    rec = _Recording(store={name: [] for name in chosen}, sizes={name: 0 for name in chosen},
                     shapes={name: [] for name in shapes_of}, evicted=[], clean=[])
    store, sizes, shapes = rec.store, rec.sizes, rec.shapes

    def keep(name: str, module: nn.Module, args: Any, output: Any) -> None:
        if name in store:
            value = copy_value(output, clone=lambda t: t.detach().clone())
            store[name].append(value)
            sizes[name] += nbytes(value)
        if name in shapes:
            primary = next(iter_tensors(output))
            shapes[name].append((tuple(primary.shape), primary.dtype, primary.device))

    if not (store or shapes):
        return rec
    handles = []
    try:
        for name in dict.fromkeys([*store, *shapes]):
            handles.append(tree.get(name).register_forward_hook(lambda m, a, o, name=name: keep(name, m, a, o)))
        with torch.no_grad():
            for batch in progress.track(subject.batches(batch_size), total=subject.n_batches(batch_size),
                                        description="recording prefixes"):
                rec.clean.append(subject.adapter.forward(subject.model, batch.inputs).float().cpu())
                while store and sum(sizes.values()) > budget_bytes:  # the estimate was short: drop the least useful
                    worst = max(store, key=lambda k: priority[k])
                    del store[worst]
                    del sizes[worst]
                    rec.evicted.append(worst)
    finally:
        for handle in handles:
            handle.remove()
    return rec


def _run_pass(subject: Subject, planned: PatchedPass, plan: Plan, route: PassRoute, store: Mapping[str, list[Any]],
              shapes: Mapping[str, list[tuple[tuple[int, ...], torch.dtype, torch.device]]], *, batch_size: int,
              traced: Mapping[str, Traced], progress: Progress) -> torch.Tensor:
    model = subject.model
    current = [0]
    patches = dict(planned.patches)
    chunks = []
    with ExitStack() as stack:
        for name in route.replaced:
            mutated = traced[name].mutated_later
            stack.enter_context(forward_replaced(model.get_submodule(name), _recorded(store[name], current, mutated)))
        if route.patched_directly and route.first is not None:
            spec = patches.pop(route.first)
            assert spec.output is not None
            if plan.direct == "constant":
                stack.enter_context(forward_replaced(model.get_submodule(route.first),
                                                      _constant_output(shapes[route.first], current, spec.output)))
            else:
                stack.enter_context(forward_replaced(model.get_submodule(route.first),
                                                      _patched_record(store[route.first], current, spec.output)))
        stack.enter_context(torch.no_grad())
        stack.enter_context(patch_many(model, patches))
        for index, batch in enumerate(progress.track(subject.batches(batch_size), total=subject.n_batches(batch_size),
                                                     description=planned.label or "patched pass")):
            current[0] = index
            chunks.append(subject.adapter.forward(model, batch.inputs).float().cpu())
    for name in route.replaced:  # handed out without a copy: nothing may have written to them
        if not traced[name].mutated_later and any(t._version for t in iter_tensors(store[name])):
            raise RuntimeError(f"the recorded output of {name} was modified in place during a patched pass, "
                               "which the traced forward did not show; the cached prefixes cannot be trusted")
    return torch.cat(chunks)


def _recorded(outputs: list[Any], current: list[int], mutated: bool) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        value = outputs[current[0]]
        # A copy only where the clean forward rewrites this output in place later; otherwise the recorded
        # tensors themselves (nothing writes to them).
        return copy_value(value, clone=lambda t: t.clone()) if mutated else copy_value(value, clone=lambda t: t)
    return forward


def _constant_output(shapes: list[tuple[tuple[int, ...], torch.dtype, torch.device]], current: list[int],
                     replacement: Any) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        shape, dtype, device = shapes[current[0]]
        return replace_output(torch.empty(shape, dtype=dtype, device=device), replacement)
    return forward


def _patched_record(outputs: list[Any], current: list[int], replacement: Any) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return replace_output(copy_value(outputs[current[0]], clone=lambda t: t.clone()), replacement)
    return forward


__all__ = ["PrefixRun", "run_with_cached_prefixes"]
