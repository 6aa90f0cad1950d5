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

import copy
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from auditor.engine.passes import PatchedPass
from auditor.progress import Progress
from auditor.subject import Subject
from auditor.walk.patch import Patch, patch_many, patch_stacked, replace_output
from auditor.walk.recorder import iter_tensors
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
        elif not _rebuildable(output):
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


def estimate_shares(passes: Sequence[Mapping[str, Patch]], traced: Mapping[str, Traced],
                    seconds: Mapping[str, float]) -> list[float]:
    """Per patched pass, the share of a full forward it will run on cached prefixes, from per-module times
    (`time_modules`): 1 minus what it skips, assuming the memory budget holds what it needs."""
    weights = {name: max(float(seconds.get(name, 0.0)), 1e-9) for name in traced}
    total = weights.get("", 0.0)
    shares = []
    for patches in passes:
        plan = _plan_pass(patches, traced)
        if plan.first is None or total <= 1e-9:
            shares.append(1.0)
            continue
        saved = sum(weights[n] for n in _maximal(plan.eligible)) + (weights[plan.first] if plan.direct else 0.0)
        shares.append(max(0.0, 1.0 - min(saved / total, 1.0)))
    return shares


def _rebuildable(value: Any) -> bool:
    if value is None or isinstance(value, (torch.Tensor, int, float, bool, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_rebuildable(v) for v in value)
    if isinstance(value, Mapping):
        return all(_rebuildable(v) for v in value.values())
    return False


def _copy(value: Any, *, clone: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`value` with every tensor in it passed through `clone`, containers rebuilt (ModelOutputs keep their type)."""
    if isinstance(value, torch.Tensor):
        return clone(value)
    if isinstance(value, tuple):
        items = [_copy(v, clone=clone) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_copy(v, clone=clone) for v in value]
    if isinstance(value, Mapping):
        result = copy.copy(value)
        for key in list(value.keys()):
            result[key] = _copy(value[key], clone=clone)  # type: ignore[index]  # Mapping: rebuilt in place
        return result
    return value


def _nbytes(value: Any) -> int:
    return sum(t.numel() * t.element_size() for t in iter_tensors(value))


@dataclass(frozen=True)
class PassRoute:
    """How one patched pass ran."""

    first: str | None
    """The patched module that runs first (None: the pass patches nothing the trace saw run)."""
    replaced: tuple[str, ...] = ()
    """Modules whose forward returned its recorded output."""
    patched_directly: bool = False
    """The first patched module's forward was replaced by its patch (it did not run)."""
    skipped: float | None = None
    """Estimated share of the clean forward's time this pass did not redo."""
    full_forward: str | None = None
    """Why the pass ran the whole model (None: it did not)."""


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


def _ancestor(a: str, b: str) -> bool:
    """Is module `a` an ancestor of module `b` (the model itself is everyone's)."""
    return a == "" or b.startswith(f"{a}.")


def _constant(replacement: Any) -> bool:
    """Replacements that do not read the module's output (zeros, a broadcast constant)."""
    return isinstance(replacement, (str, torch.Tensor))


@dataclass
class _Plan:
    first: str | None
    eligible: list[str]
    direct: str | None = None
    """"constant" or "recorded": how the first patched module's patch can stand in for its forward."""
    why: str | None = None


def _plan_pass(patches: Mapping[str, Patch], traced: Mapping[str, Traced]) -> _Plan:
    names = list(patches)
    if not names:
        return _Plan(first=None, eligible=[], why="it patches nothing")
    unseen = [n for n in names if n not in traced or traced[n].calls == 0]
    if unseen:
        return _Plan(first=None, eligible=[], why=f"{unseen[0]} did not run in the traced forward")
    first = min(names, key=lambda n: traced[n].start)
    start = traced[first].start
    eligible = [n for n, t in traced.items()
                if n and t.why_not is None and t.calls == 1 and t.end < start and not _ancestor(n, first)]
    spec, record = patches[first], traced[first]
    direct = None
    if spec.weights is None and spec.output is not None and record.why_not is None:
        direct = "constant" if _constant(spec.output) and record.plain_tensor else "recorded"
    return _Plan(first=first, eligible=eligible, direct=direct)


def _maximal(names: Sequence[str]) -> list[str]:
    """The names none of whose ancestors is among them."""
    chosen = set(names)
    return [n for n in names if not any(_ancestor(a, n) for a in _prefixes(n) if a in chosen)]


def _prefixes(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


@contextmanager
def _forward_replaced(module: nn.Module, forward: Callable[..., Any]) -> Iterator[None]:
    """`module.forward` is `forward` for the length of the block; the class's own forward comes back after."""
    own = module.__dict__.get("forward")
    setattr(module, "forward", forward)  # noqa: B010  (an instance attribute shadows the class's method)
    try:
        yield
    finally:
        if own is not None:
            setattr(module, "forward", own)  # noqa: B010
        else:
            delattr(module, "forward")


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
    model = subject.model
    plans = [_plan_pass(p.patches, traced) for p in passes]
    n = len(subject)
    weights = {name: max(float((seconds or {}).get(name, 0.0)), 1e-9) for name in tree.names}

    # What to record: the modules each pass could replace (its outermost eligible ones), ranked by the time
    # they save per byte; then the first patched modules whose patch reads their output.
    benefit: dict[str, float] = {}
    for plan in plans:
        for name in _maximal(plan.eligible):
            benefit[name] = benefit.get(name, 0.0) + weights[name]
        if plan.first is not None and plan.direct == "recorded":
            benefit[plan.first] = benefit.get(plan.first, 0.0) + weights[plan.first]
    estimate = {name: traced[name].bytes_per_sample * n for name in benefit}
    ranked = sorted(benefit, key=lambda name: -benefit[name] / max(estimate[name], 1.0))
    chosen, planned_bytes = [], 0.0
    for name in ranked:
        if planned_bytes + estimate[name] <= budget_bytes:
            chosen.append(name)
            planned_bytes += estimate[name]
    priority = {name: i for i, name in enumerate(chosen)}
    shapes_of = {p.first for p in plans if p.first is not None and p.direct == "constant"}

    store: dict[str, list[Any]] = {name: [] for name in chosen}
    sizes: dict[str, int] = {name: 0 for name in chosen}
    shapes: dict[str, list[tuple[tuple[int, ...], torch.dtype, torch.device]]] = {name: [] for name in shapes_of}
    evicted: list[str] = []
    clean: list[torch.Tensor] = []

    def keep(name: str, module: nn.Module, args: Any, output: Any) -> None:
        if name in store:
            value = _copy(output, clone=lambda t: t.detach().clone())
            store[name].append(value)
            sizes[name] += _nbytes(value)
        if name in shapes:
            primary = next(iter_tensors(output))
            shapes[name].append((tuple(primary.shape), primary.dtype, primary.device))

    if store or shapes:
        handles = []
        try:
            for name in dict.fromkeys([*store, *shapes]):
                handles.append(tree.get(name).register_forward_hook(
                    lambda m, a, o, name=name: keep(name, m, a, o)))
            with torch.no_grad():
                for batch in progress.track(subject.batches(batch_size), total=subject.n_batches(batch_size),
                                            description="recording prefixes"):
                    clean.append(subject.adapter.forward(model, batch.inputs).float().cpu())
                    while store and sum(sizes.values()) > budget_bytes:  # the estimate was short: drop the least useful
                        worst = max(store, key=lambda k: priority[k])
                        del store[worst]
                        del sizes[worst]
                        evicted.append(worst)
        finally:
            for handle in handles:
                handle.remove()

    recorded = time.perf_counter()
    routes = [_route(plan, store, traced, weights) for plan in plans]
    results: list[torch.Tensor | None] = [None] * len(passes)
    pass_seconds = [0.0] * len(passes)
    groups = _groups(passes, plans, routes, store, traced, subject, batch_size, stack)
    for group in groups:
        begun = time.perf_counter()
        if len(group) == 1:
            i = group[0]
            results[i] = _run_pass(subject, passes[i], plans[i], routes[i], store, shapes, batch_size=batch_size,
                                   traced=traced, progress=progress)
        else:
            for i, scores in zip(group, _run_stacked(subject, [passes[i] for i in group], plans[group[0]],
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


def _stackable_pass(planned: PatchedPass, route: PassRoute, traced: Mapping[str, Traced]) -> bool:
    """One patch of one module's output (not its weights, not per call): the kind several passes can share."""
    if route.first is None or list(planned.patches) != [route.first]:
        return False
    spec = planned.patches[route.first]
    record = traced.get(route.first)
    return spec.output is not None and spec.weights is None and spec.calls is None and record is not None \
        and record.calls == 1


def _batch_first(value: Any, size: int) -> bool:
    tensors = list(iter_tensors(value))
    return bool(tensors) and all(t.dim() >= 1 and t.shape[0] == size for t in tensors)


def stacking_check(subject: Subject, batch_size: int) -> bool:
    """Does the model score each row of a batch on its own, so that copies stacked along the batch dimension do
    not see each other? Every input batch-first, and the first batch followed by some of its own samples in
    reverse order scores each row as the batch alone does (within float rounding): a model that mixes the
    samples (a batch mean, the first sample) sees a different batch there and fails."""
    batch = subject.first_batch(batch_size)
    size = len(batch)
    if size < 2 or not _batch_first(batch.inputs, size):
        return False
    order = torch.arange(size - 1, size - 1 - max(1, size // 2), -1)
    mixed = {k: torch.cat([v, v[order.to(v.device)]]) for k, v in batch.inputs.items()}
    with torch.no_grad():
        alone = subject.adapter.forward(subject.model, batch.inputs).float()
        both = subject.adapter.forward(subject.model, mixed).float()
    expected = torch.cat([alone, alone[order.to(alone.device)]])
    if both.shape != expected.shape:
        return False
    tolerance = STACK_RTOL * float(alone.abs().max()) + STACK_ATOL
    return bool(((both - expected).abs() <= tolerance).all())


STACK_RTOL = 1e-4
"""Stacked passes agree with one-at-a-time ones to within this share of the largest score (plus STACK_ATOL):
float rounding, which changes with the batch size; the model treating copies differently shows far above it."""
STACK_ATOL = 1e-5


def _groups(passes: Sequence[PatchedPass], plans: Sequence[_Plan], routes: Sequence[PassRoute],
            store: Mapping[str, list[Any]], traced: Mapping[str, Traced], subject: Subject, batch_size: int,
            stack: int) -> list[list[int]]:
    """The passes in groups that share one forward (each at most `stack` long; alone where they cannot)."""
    singles = [[i] for i in range(len(passes))]
    if stack <= 1 or len(passes) < 2:
        return singles
    candidates: dict[tuple[str, tuple[str, ...], bool, str | None], list[int]] = {}
    for i, (planned, plan, route) in enumerate(zip(passes, plans, routes, strict=True)):
        if route.first is not None and _stackable_pass(planned, route, traced):
            candidates.setdefault((route.first, route.replaced, route.patched_directly, plan.direct), []).append(i)
    if not any(len(members) > 1 for members in candidates.values()):
        return singles
    if not stacking_check(subject, batch_size):
        return singles
    first_size = len(subject.first_batch(batch_size))
    traced_samples = min(2, len(subject))
    grouped: set[int] = set()
    groups: list[list[int]] = []
    for (first, replaced, direct, how), members in candidates.items():
        recorded = [*replaced, *([first] if direct and how == "recorded" else [])]
        primary = traced[first].shape
        if len(members) < 2 or not primary or primary[0] != traced_samples or \
                not all(store.get(name) and _batch_first(store[name][0], first_size) for name in recorded):
            continue
        for start in range(0, len(members), stack):
            chunk = members[start:start + stack]
            if len(chunk) > 1:
                groups.append(chunk)
                grouped.update(chunk)
    groups += [[i] for i in range(len(passes)) if i not in grouped]
    return sorted(groups, key=lambda g: g[0])


def _stack_inputs(inputs: Mapping[str, torch.Tensor], copies: int) -> dict[str, torch.Tensor]:
    return {k: torch.cat([v] * copies) for k, v in inputs.items()}


def _cat(values: Sequence[Any]) -> Any:
    """Values of one structure (tensors, tuples, ModelOutputs) joined along the batch dimension, tensor by tensor."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(values))
    if isinstance(first, tuple):
        items = [_cat([v[i] for v in values]) for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else tuple(items)
    if isinstance(first, list):
        return [_cat([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, Mapping):
        result = copy.copy(first)
        for key in list(first.keys()):
            result[key] = _cat([v[key] for v in values])  # type: ignore[index]  # Mapping: rebuilt in place
        return result
    return first


def _run_stacked(subject: Subject, group: Sequence[PatchedPass], plan: _Plan, route: PassRoute,
                 store: Mapping[str, list[Any]], shapes: Mapping[str, list[tuple[tuple[int, ...], torch.dtype,
                                                                                   torch.device]]], *,
                 batch_size: int, traced: Mapping[str, Traced], progress: Progress) -> list[torch.Tensor]:
    """K passes on one route, each patching the same module's output its own way, in one forward per batch over
    K stacked copies of the batch; returns each pass's scores."""
    model = subject.model
    copies = len(group)
    current = [0]
    first = route.first
    assert first is not None
    replacements = [p.patches[first].output for p in group]
    chunks: list[list[torch.Tensor]] = [[] for _ in group]
    with ExitStack() as stack:
        for name in route.replaced:
            stack.enter_context(_forward_replaced(model.get_submodule(name), _recorded_stacked(store[name], current,
                                                                                              copies)))
        if route.patched_directly:
            if plan.direct == "constant":
                forward = _constant_stacked(shapes[first], current, replacements)
            else:
                forward = _patched_record_stacked(store[first], current, replacements)
            stack.enter_context(_forward_replaced(model.get_submodule(first), forward))
        else:
            stack.enter_context(patch_stacked(model.get_submodule(first), replacements))  # type: ignore[arg-type]
        stack.enter_context(torch.no_grad())
        for index, batch in enumerate(progress.track(subject.batches(batch_size), total=subject.n_batches(batch_size),
                                                     description=f"{group[0].label or 'patched pass'} "
                                                                 f"(+{copies - 1} in the same forward)")):
            current[0] = index
            scores = subject.adapter.forward(model, _stack_inputs(batch.inputs, copies)).float().cpu()
            for k, part in enumerate(scores.chunk(copies)):
                chunks[k].append(part)
            progress.advance(copies - 1)
    for name in route.replaced:
        if any(t._version for t in iter_tensors(store[name])):
            raise RuntimeError(f"the recorded output of {name} was modified in place during a patched pass, "
                               "which the traced forward did not show; the cached prefixes cannot be trusted")
    return [torch.cat(parts) for parts in chunks]


def _recorded_stacked(outputs: list[Any], current: list[int], copies: int) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        value = outputs[current[0]]
        return _cat([value] * copies)  # a fresh tensor: an in-place op after it cannot reach the record
    return forward


def _constant_stacked(shapes: list[tuple[tuple[int, ...], torch.dtype, torch.device]], current: list[int],
                      replacements: Sequence[Any]) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        shape, dtype, device = shapes[current[0]]
        return torch.cat([replace_output(torch.empty(shape, dtype=dtype, device=device), r) for r in replacements])
    return forward


def _patched_record_stacked(outputs: list[Any], current: list[int], replacements: Sequence[Any]) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        value = outputs[current[0]]
        return _cat([replace_output(_copy(value, clone=lambda t: t.clone()), r) for r in replacements])
    return forward


def _route(plan: _Plan, store: Mapping[str, list[Any]], traced: Mapping[str, Traced],
           weights: Mapping[str, float]) -> PassRoute:
    if plan.first is None:
        return PassRoute(first=None, full_forward=plan.why)
    replaced = tuple(_maximal([n for n in plan.eligible if n in store]))
    direct = plan.direct == "constant" or (plan.direct == "recorded" and plan.first in store)
    total = weights.get("", 0.0)
    saved = sum(weights[n] for n in replaced) + (weights[plan.first] if direct else 0.0)
    skipped = min(saved / total, 1.0) if total > 1e-9 else None
    why = None
    if not replaced and not direct:
        before = [n for n, t in traced.items() if n and 0 <= t.end < traced[plan.first].start
                  and not _ancestor(n, plan.first)]
        if not before:
            why = "it runs first"
        elif plan.eligible:
            why = "the memory budget left no room for what runs before it"
        else:
            reasons = sorted({w for n in before if (w := traced[n].why_not) is not None})
            why = "what runs before it cannot be recorded (" + "; ".join(reasons) + ")" if reasons else \
                "nothing before it can be recorded"
    return PassRoute(first=plan.first, replaced=replaced, patched_directly=direct, skipped=skipped, full_forward=why)


def _run_pass(subject: Subject, planned: PatchedPass, plan: _Plan, route: PassRoute, store: Mapping[str, list[Any]],
              shapes: Mapping[str, list[tuple[tuple[int, ...], torch.dtype, torch.device]]], *, batch_size: int,
              traced: Mapping[str, Traced], progress: Progress) -> torch.Tensor:
    model = subject.model
    current = [0]
    patches = dict(planned.patches)
    chunks = []
    with ExitStack() as stack:
        for name in route.replaced:
            mutated = traced[name].mutated_later
            stack.enter_context(_forward_replaced(model.get_submodule(name), _recorded(store[name], current, mutated)))
        if route.patched_directly and route.first is not None:
            spec = patches.pop(route.first)
            assert spec.output is not None
            if plan.direct == "constant":
                stack.enter_context(_forward_replaced(model.get_submodule(route.first),
                                                      _constant_output(shapes[route.first], current, spec.output)))
            else:
                stack.enter_context(_forward_replaced(model.get_submodule(route.first),
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
        return _copy(value, clone=lambda t: t.clone()) if mutated else _copy(value, clone=lambda t: t)
    return forward


def _constant_output(shapes: list[tuple[tuple[int, ...], torch.dtype, torch.device]], current: list[int],
                     replacement: Any) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        shape, dtype, device = shapes[current[0]]
        return replace_output(torch.empty(shape, dtype=dtype, device=device), replacement)
    return forward


def _patched_record(outputs: list[Any], current: list[int], replacement: Any) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return replace_output(_copy(outputs[current[0]], clone=lambda t: t.clone()), replacement)
    return forward


__all__ = ["PassRoute", "PrefixRun", "Traced", "estimate_shares", "run_with_cached_prefixes", "time_modules",
           "trace_modules"]
