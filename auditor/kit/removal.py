"""What the ablation analysis removes, as patches: modules (residual blocks by their branches), attention
heads, single units of chosen layers, and growing shares of a layer's kernels (structured pruning).

Each target becomes one `PatchedPass`; targets that patch the same modules the same way share it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch import nn

from auditor.engine.analysis import PlanContext
from auditor.engine.trace import Traced
from auditor.walk.patch import Patch, Replacement
from auditor.walk.records import call_key, split_call

TargetKind = Literal["block", "module", "head", "unit"]
Granularity = Literal["default", "all", "leaves", "blocks"]
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM_AFTER = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Target:
    """One thing ablated alone, and how."""

    name: str
    """Its row name: the module, `<module>#<unit>` for a unit, `<module>#head<h>` for a head."""
    kind: TargetKind
    patches: Mapping[str, Patch]
    key: tuple[object, ...]
    """Equal keys patch the same modules the same way (one pass serves both)."""
    replaced: str
    """What its output was replaced by, in words ("mean", "zeros", "zeros (no per-unit mean ...)")."""
    branches: tuple[str, ...] = ()
    """For a residual block: the branches ablated in its place."""
    module: str = ""
    """The module the target lives in (a unit's or head's module; else the target itself)."""
    index: int | None = None
    """The unit or head index."""
    call: int | None = None
    """A module used more than once per forward: the one call ablated (`<module>@<call>`), the others left alone;
    None with `calls` > 1: every call ablated, each by its own per-call mean."""
    calls: int = 1
    """Calls per forward of the module."""


def describe_target(t: Target) -> str:
    """A target's name in a sentence: "unit 12 of features.gap", "head 3 of ...", "layer.2 (by its residual ...)"."""
    if t.kind == "unit":
        if t.call is not None:
            return f"unit {t.index} of call {t.call} of {split_call(t.module)[0]} ({t.module})"
        return f"unit {t.index} of {t.module}"
    if t.kind == "head":
        return f"head {t.index} of {t.module}"
    if t.branches:
        return f"{t.name} (by its residual branch{'es' * (len(t.branches) > 1)} {', '.join(t.branches)})"
    if t.call is not None:
        return f"{t.name} (call {t.call} of the {t.calls} calls of {t.module} per forward, the others intact)"
    if t.calls > 1:
        return f"{t.name} (all {t.calls} calls per forward)"
    return t.name


def replaced_part(t: Target) -> str:
    """What a target's ablation replaces, in a sentence: "the output of fc", "the residual branch of layer1.0
    (layer1.0.bn2)" (the block's shortcut and everything else around the branch kept)."""
    if t.branches and t.kind == "block":
        return f"the residual branch{'es' * (len(t.branches) > 1)} of {t.name} ({', '.join(t.branches)})"
    return f"the output of {describe_target(t)}"


def ablated_as(t: Target) -> str:
    """What replaced the target's output, naming a residual block's branches relative to it."""
    if t.branches:
        tails = [b[len(t.name) + 1:] if b.startswith(f"{t.name}.") else b for b in t.branches]
        return f"{' + '.join(tails)} ({t.replaced})"
    return t.replaced


@dataclass(frozen=True)
class PruneStep:
    """One point of a pruning curve: `removed` of a layer's kernels gone, chosen by `method`."""

    layer: str
    method: Literal["l1", "random"]
    removed: int
    units: int
    site: str
    """Where the channels are zeroed: the layer, or the BatchNorm that follows it."""
    patches: Mapping[str, Patch]

    @property
    def fraction(self) -> float:
        return self.removed / self.units

    @property
    def key(self) -> tuple[object, ...]:
        return ("prune", self.layer, self.method, self.removed)


@dataclass
class Selection:
    """Everything one audit ablates, and what was left out and why."""

    targets: list[Target] = field(default_factory=list)
    prune: list[PruneStep] = field(default_factory=list)
    unit_layers: list[str] = field(default_factory=list)
    head_modules: list[str] = field(default_factory=list)
    heads: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    """Module -> why it was not ablated."""
    truncated_units: dict[str, int] = field(default_factory=dict)
    """Unit layer -> how many units it has (only the first `max_units` were ablated)."""


def select_modules(ctx: PlanContext, traced: Mapping[str, Traced], modules: Granularity | Sequence[str]) -> list[str]:
    """The modules to ablate, in execution order: `default` = every block and every leaf with parameters."""
    ran = {n for n, t in traced.items() if n and t.calls > 0}
    leaves = {n for n, m in ctx.tree.modules() if next(m.children(), None) is None}
    if isinstance(modules, str):
        blocks = set(ctx.block_names()) & ran
        chosen: set[str]
        if modules == "blocks":
            chosen = blocks
        elif modules == "leaves":
            chosen = leaves & ran
        elif modules == "all":
            chosen = set(ran)
        else:
            chosen = blocks | {n for n in leaves & ran if ctx.tree.nodes[n].own_params}
    else:
        chosen = {n for n in ran if any(fnmatch.fnmatchcase(n, p) for p in modules)}
    return sorted(chosen, key=lambda n: (traced[n].start, n))


def residual_branches(ctx: PlanContext, name: str) -> tuple[str, ...]:
    """A residual block's branches (what it adds to the stream), or () when its output is not a stream."""
    joins = [j for j in ctx.joins if j.block == name]
    if not any(j.stream is not None for j in joins):
        return ()
    return tuple(dict.fromkeys(b.module for j in joins for b in j.branches))


def _mean_shaped(mean: torch.Tensor | None, record: Traced) -> torch.Tensor | None:
    """The per-unit mean shaped to broadcast over the module's output, or None when it does not fit."""
    if mean is None or record.shape is None or record.unit_dim is None:
        return None
    if record.shape[record.unit_dim] != mean.numel():
        return None
    view = [1] * len(record.shape)
    view[record.unit_dim] = mean.numel()
    return mean.float().reshape(view)


def whole_output(name: str, traced: Mapping[str, Traced], means: Mapping[str, torch.Tensor],
                 mode: Literal["mean", "zero"]) -> tuple[Replacement, str]:
    """What a module's output becomes, and that in words."""
    if mode == "zero":
        return "zeros", "zeros"
    shaped = _mean_shaped(means.get(name), traced[name])
    if shaped is None:
        return "zeros", "zeros (no per-unit mean: the output is not per sample)"
    return shaped, "mean"


def _slice_fn(dim: int, start: int, stop: int, fill: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """out -> a copy with positions start:stop of `dim` set to `fill` (broadcast) or to zero."""
    def replace(out: torch.Tensor) -> torch.Tensor:
        new = out.clone()
        part = new.narrow(dim if dim >= 0 else new.dim() + dim, start, stop - start)
        if fill is None:
            part.zero_()
        else:
            part.copy_(fill.to(dtype=new.dtype, device=new.device).expand_as(part))
        return new
    return replace


def _mask_fn(dim: int, keep: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def prune(out: torch.Tensor) -> torch.Tensor:
        view = [1] * out.dim()
        view[dim] = keep.numel()
        return out * keep.to(dtype=out.dtype, device=out.device).reshape(view)
    return prune


def module_targets(ctx: PlanContext, traced: Mapping[str, Traced], means: Mapping[str, torch.Tensor], *,
                   modules: Granularity | Sequence[str], mode: Literal["mean", "zero"],
                   selection: Selection) -> None:
    for name in select_modules(ctx, traced, modules):
        record = traced[name]
        if record.shape is None or not record.shape:
            selection.skipped[name] = "its output is not a tensor with samples"
            continue
        branches = residual_branches(ctx, name) if name in ctx.block_names("layer") else ()
        if branches:
            patches, words = {}, set()
            for branch in branches:
                replacement, how = whole_output(branch, traced, means, mode)
                patches[branch] = Patch(output=replacement)
                words.add(how)
            key: tuple[object, ...] = tuple(sorted((b, mode) for b in branches))
            selection.targets.append(Target(name=name, kind="block", patches=patches, key=key,
                                            replaced=", ".join(sorted(words)), branches=branches, module=name))
            continue
        kind: TargetKind = "block" if name in ctx.block_names() else "module"
        if record.calls > 1 and len(record.call_shapes) == record.calls:
            _call_targets(name, kind, record, means, mode, selection)
            continue
        replacement, how = whole_output(name, traced, means, mode)
        selection.targets.append(Target(name=name, kind=kind, patches={name: Patch(output=replacement)},
                                        key=((name, mode),), replaced=how, module=name))


def _call_output(name: str, call: int, record: Traced, means: Mapping[str, torch.Tensor],
                 mode: Literal["mean", "zero"]) -> tuple[Replacement, str]:
    """What the output of one call of a reused module becomes: its own per-call mean (calls differ in width)."""
    if mode == "zero":
        return "zeros", "zeros"
    shape = record.call_shapes[call - 1]
    shaped = _mean_shaped(means.get(call_key(name, call)), replace(record, shape=shape))
    if shaped is None:
        return "zeros", "zeros (no per-unit mean: the output is not per sample)"
    return shaped, "mean"


def _call_targets(name: str, kind: TargetKind, record: Traced, means: Mapping[str, torch.Tensor],
                  mode: Literal["mean", "zero"], selection: Selection) -> None:
    """A module used more than once per forward: ablated as a whole (every call, each by its own mean) under its
    name, and each call alone (`<name>@<k>`, the other calls intact)."""
    calls = record.calls
    outputs = [_call_output(name, k, record, means, mode) for k in range(1, calls + 1)]
    words = sorted({how for _, how in outputs})
    selection.targets.append(Target(
        name=name, kind=kind, patches={name: Patch(calls=tuple(r for r, _ in outputs))}, key=((name, mode, "calls"),),
        replaced=f"{', '.join(words)} of each call" if words != ["zeros"] else "zeros at every call",
        module=name, calls=calls))
    for k, (replacement, how) in enumerate(outputs, start=1):
        only: list[Replacement | None] = [None] * calls
        only[k - 1] = replacement
        selection.targets.append(Target(
            name=call_key(name, k), kind=kind, patches={name: Patch(calls=tuple(only))}, key=((name, mode, "call", k),),
            replaced=f"{how} (call {k} only)", module=name, call=k, calls=calls))


def head_targets(traced: Mapping[str, Traced], means: Mapping[str, torch.Tensor], *, heads: int,
                 head_modules: Sequence[str], mode: Literal["mean", "zero"], selection: Selection) -> None:
    """Each head: its slice of the input to the attention output projection (the self-attention's output)."""
    for name in head_modules:
        record = traced.get(name)
        if record is None or record.calls == 0 or record.shape is None or record.shape[-1] % heads:
            continue
        if record.calls > 1:
            selection.skipped[f"{name}#head*"] = "heads of an attention module called more than once per forward"
            continue
        width = record.shape[-1] // heads
        mean = means.get(name) if mode == "mean" else None
        selection.head_modules.append(name)
        for h in range(heads):
            fill = mean[h * width:(h + 1) * width].float() if mean is not None and mean.numel() == record.shape[-1] \
                else None
            patch = Patch(output=_slice_fn(-1, h * width, (h + 1) * width, fill))
            selection.targets.append(Target(
                name=f"{name}#head{h}", kind="head", patches={name: patch}, key=(name, "head", h, mode),
                replaced="mean" if fill is not None else "zeros", module=name, index=h))
    selection.heads = heads if selection.head_modules else 0


def default_unit_layers(ctx: PlanContext, traced: Mapping[str, Traced]) -> list[str]:
    """The last convolutional block, and the penultimate layer: what feeds the head."""
    chosen = []
    ran = {n: t for n, t in traced.items() if n and t.calls > 0}
    convs = sorted((n for n in ran if isinstance(ctx.tree.get(n), _CONV)), key=lambda n: ran[n].start)
    if convs:
        last = convs[-1]
        layer = next((b.name for b in ctx.blocks if b.kind == "layer" and last.startswith(f"{b.name}.")), None)
        chosen.append(layer or last)
    head = next((b.name for b in ctx.blocks if b.kind == "head"), None)
    if head is not None and head in ran:
        feeding = ran[head].input_from
        if feeding is None or feeding == head:
            before = [b.name for b in ctx.blocks if b.kind != "head" and b.name in ran and ran[b.name].end < ran[head].start]
            feeding = max(before, key=lambda n: ran[n].end) if before else None
        elif feeding in ran and ran[feeding].calls > 1:  # a shared activation: the call that feeds the head
            feeding = call_key(feeding, ran[head].input_from_call)
        if feeding is not None:
            chosen.append(feeding)
    return list(dict.fromkeys(chosen))


def unit_targets(traced: Mapping[str, Traced], means: Mapping[str, torch.Tensor], layers: Sequence[str], *,
                 mode: Literal["mean", "zero"], max_units: int, selection: Selection) -> None:
    """Each unit of each layer alone. A layer used more than once per forward has units per call: a call key
    (`pool@2`) names one call, its plain name every call, each unit of each call ablated at that call only."""
    for layer in layers:
        module, only = split_call(layer)
        record = traced.get(module) if only is not None else None
        if record is None or record.calls < 2:  # a plain name (or one that merely holds an "@")
            module, only, record = layer, None, traced.get(layer)
        if record is not None and record.calls > 1 and len(record.call_shapes) == record.calls:
            for k in [only] if only is not None else range(1, record.calls + 1):
                if k is not None and k <= record.calls:
                    _units_of(call_key(module, k), module, replace(record, shape=record.call_shapes[k - 1]), means,
                              mode=mode, max_units=max_units, selection=selection, call=k, calls=record.calls)
            continue
        _units_of(layer, layer, record, means, mode=mode, max_units=max_units, selection=selection)


def _units_of(name: str, module: str, record: Traced | None, means: Mapping[str, torch.Tensor], *,
              mode: Literal["mean", "zero"], max_units: int, selection: Selection, call: int | None = None,
              calls: int = 1) -> None:
    if record is None or record.calls == 0 or record.shape is None or record.unit_dim is None:
        selection.skipped[name] = "no units to ablate (it did not run, or its output has no unit dimension)"
        return
    units = record.shape[record.unit_dim]
    mean = means.get(name) if mode == "mean" else None
    if mean is not None and mean.numel() != units:
        mean = None
    if units > max_units:
        selection.truncated_units[name] = units
    selection.unit_layers.append(name)
    for u in range(min(units, max_units)):
        fill = mean[u].reshape(()) if mean is not None else None
        replacement = _slice_fn(record.unit_dim, u, u + 1, fill)
        if call is None:
            patch = Patch(output=replacement)
        else:  # only this call of the layer
            patch = Patch(calls=tuple(replacement if k == call else None for k in range(1, calls + 1)))
        selection.targets.append(Target(
            name=f"{name}#{u}", kind="unit", patches={module: patch}, key=(name, "unit", u, mode),
            replaced="mean" if fill is not None else "zeros", module=name, index=u, call=call, calls=calls))


def prune_layers(ctx: PlanContext, traced: Mapping[str, Traced], *, patterns: Sequence[str], linear: bool) -> list[str]:
    """Layers whose kernels the pruning sweep removes: convolutions (and linear layers on request), or `patterns`."""
    head = {b.name for b in ctx.blocks if b.kind == "head"}
    kinds: tuple[type[nn.Module], ...] = (*_CONV, nn.Linear) if linear or patterns else _CONV
    names = []
    for name, module in ctx.tree.modules():
        record = traced.get(name)
        if not name or record is None or record.calls != 1 or not isinstance(module, kinds):
            continue
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        if not patterns and name in head:
            continue  # the head's outputs are the classes
        names.append(name)
    return sorted(names, key=lambda n: traced[n].start)


def prune_steps(ctx: PlanContext, traced: Mapping[str, Traced], layers: Sequence[str], *,
                fractions: Sequence[float], seed: int) -> list[PruneStep]:
    """Per layer and method, the kernels removed at each fraction (nested: 20% removes the 10% and more)."""
    steps = []
    for index, name in enumerate(layers):
        module = ctx.tree.get(name)
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            continue
        units = weight.shape[0]
        site = _site(ctx, traced, name, units)
        record = traced[site]
        if record.unit_dim is None or record.shape is None or record.shape[record.unit_dim] != units:
            continue
        norms = weight.detach().abs().reshape(units, -1).sum(dim=1).double().cpu().numpy()
        orders: dict[Literal["l1", "random"], np.ndarray] = {
                  "l1": np.argsort(norms, kind="stable"),
                  "random": np.random.default_rng([seed, index]).permutation(units)}
        counts = sorted({min(max(int(round(f * units)), 1), units) for f in fractions})
        for method, order in orders.items():
            for removed in counts:
                keep = torch.ones(units)
                keep[torch.as_tensor(order[:removed].copy())] = 0.0
                steps.append(PruneStep(layer=name, method=method, removed=removed, units=units,
                                       site=site, patches={site: Patch(output=_mask_fn(record.unit_dim, keep))}))
    return steps


def _site(ctx: PlanContext, traced: Mapping[str, Traced], name: str, units: int) -> str:
    """The BatchNorm that directly follows the layer (a zeroed channel would come back as its bias), else the layer."""
    for other, record in traced.items():
        module = ctx.tree.get(other) if other in ctx.tree else None
        if record.input_from == name and isinstance(module, _NORM_AFTER) and module.num_features == units:
            return other
    return name


__all__ = ["Granularity", "PruneStep", "Selection", "Target", "ablated_as", "default_unit_layers", "describe_target",
           "head_targets", "module_targets", "prune_layers", "prune_steps", "replaced_part", "residual_branches",
           "select_modules", "unit_targets"]
