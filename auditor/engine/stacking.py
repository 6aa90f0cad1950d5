"""Stacked passes: K patched passes that patch one module's output on the same route share one forward, each on
its own copy of the batch stacked along the batch dimension, where the model treats the copies alike."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import torch

from auditor.engine.passes import PatchedPass
from auditor.engine.prefix_plan import PassRoute, Plan
from auditor.engine.swap import copy_value, forward_replaced
from auditor.engine.trace import Traced
from auditor.progress import Progress
from auditor.subject import Subject
from auditor.walk.patch import patch_stacked, replace_output
from auditor.walk.records import iter_tensors


def stackable_pass(planned: PatchedPass, route: PassRoute, traced: Mapping[str, Traced]) -> bool:
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


def stack_groups(passes: Sequence[PatchedPass], plans: Sequence[Plan], routes: Sequence[PassRoute],
            store: Mapping[str, list[Any]], traced: Mapping[str, Traced], subject: Subject, batch_size: int,
            stack: int) -> list[list[int]]:
    """The passes in groups that share one forward (each at most `stack` long; alone where they cannot)."""
    singles = [[i] for i in range(len(passes))]
    if stack <= 1 or len(passes) < 2:
        return singles
    candidates: dict[tuple[str, tuple[str, ...], bool, str | None], list[int]] = {}
    for i, (planned, plan, route) in enumerate(zip(passes, plans, routes, strict=True)):
        if route.first is not None and stackable_pass(planned, route, traced):
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


def run_stacked(subject: Subject, group: Sequence[PatchedPass], plan: Plan, route: PassRoute,
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
            stack.enter_context(forward_replaced(model.get_submodule(name), _recorded_stacked(store[name], current,
                                                                                              copies)))
        if route.patched_directly:
            if plan.direct == "constant":
                forward = _constant_stacked(shapes[first], current, replacements)
            else:
                forward = _patched_record_stacked(store[first], current, replacements)
            stack.enter_context(forward_replaced(model.get_submodule(first), forward))
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
        return _cat([replace_output(copy_value(value, clone=lambda t: t.clone()), r) for r in replacements])
    return forward
