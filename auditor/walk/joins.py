"""Residual joins: where two computed tensors are added, found on a 2-sample forward.

A join is a sum `s = a + b` inside a block, read back from the tensors the modules exchange: `s` is the
input of some module (the LayerNorm after a transformer sublayer, the ReLU after a ResNet block's sum)
or the block's own output, and `a`, `b` are outputs of earlier modules or the block's input. No graph
tracing: the sum is checked numerically, which works on any model whose forward a hook can watch.

A summand read only by the sum is a *branch* (a transformer sublayer's output projection, a ResNet
block's last norm); a summand that other modules read too is the *stream* (the residual stream, a
shortcut). The gradient at a branch is the gradient at the sum, so a branch's conductance is its share
of the sum's, and the stream's share is the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from auditor.subject import Subject
from auditor.walk.blocks import Block
from auditor.walk.recorder import iter_tensors
from auditor.walk.tree import ModuleTree

MAX_SCOPE_MODULES = 400
"""A search scope (a block, or the whole model when it has no repeated blocks) larger than this is skipped."""


@dataclass(frozen=True)
class SumSite:
    """Where a sum can be read: the input of a module at one of its calls, or a module's output."""

    module: str
    where: str
    """"input" (the first tensor argument) or "output"."""
    call: int = 0
    """Which call of the module in one forward (a ReLU object used twice in a ResNet block)."""


@dataclass(frozen=True)
class Join:
    """One residual sum in a block: its site, the branches that feed only it, and the stream."""

    block: str
    site: SumSite
    branches: tuple[SumSite, ...]
    """Outputs of modules that are summands read by nothing else."""
    stream: str | None
    """The other summand: a module's output, "<input of BLOCK>", or None when both summands are branches."""


@dataclass
class _Seen:
    order: int
    module: str
    tensor: torch.Tensor  # a copy, as it was when recorded
    ident: tuple[int, int]
    call: int = 0

    def __post_init__(self) -> None:
        flat = self.tensor.double().reshape(-1)
        self.total = float(flat.sum())
        self.l1 = float(flat.abs().sum())


@dataclass
class _Scope:
    name: str
    members: set[str]
    outputs: list[_Seen] = field(default_factory=list)
    inputs: list[_Seen] = field(default_factory=list)
    block_input: _Seen | None = None
    block_output: _Seen | None = None


def _first_float(value: Any) -> torch.Tensor | None:
    return next((t for t in iter_tensors(value) if t.is_floating_point()), None)


def _scopes(tree: ModuleTree, blocks: list[Block]) -> list[_Scope]:
    names = tree.names
    layers = [b.name for b in blocks if b.kind == "layer"]
    scopes = []
    for block in layers or [""]:
        prefix = f"{block}." if block else ""
        members = {n for n in names if n.startswith(prefix) and n != block}
        if members and len(members) <= MAX_SCOPE_MODULES:
            scopes.append(_Scope(block, members))
    return scopes


def find_joins(subject: Subject, tree: ModuleTree, blocks: list[Block]) -> list[Join]:
    """The residual joins of the model, from one forward over the first two audit samples."""
    scopes = _scopes(tree, blocks)
    if not scopes:
        return []
    counter = [0]
    calls: dict[str, int] = {}
    alive: list[torch.Tensor] = []  # identities are ids: no tensor may be freed (and its id reused) meanwhile

    def seen(name: str, t: torch.Tensor) -> _Seen:
        counter[0] += 1
        alive.append(t)
        return _Seen(counter[0], name, t.detach().clone(), (id(t), t._version), calls.get(name, 0))

    def on_input(scope: _Scope, name: str, module: nn.Module, args: Any) -> None:
        t = _first_float(args)
        if t is None:
            return
        if name == scope.name:
            scope.block_input = seen(name, t)
        else:
            scope.inputs.append(seen(name, t))

    def on_output(scope: _Scope, name: str, module: nn.Module, args: Any, output: Any) -> None:
        t = _first_float(output)
        if t is not None:
            if name == scope.name:
                scope.block_output = seen(name, t)
            else:
                scope.outputs.append(seen(name, t))

    def count(name: str, module: nn.Module, args: Any, output: Any) -> None:
        calls[name] = calls.get(name, 0) + 1

    handles = []
    try:
        for scope in scopes:
            for name in [scope.name, *sorted(scope.members)]:
                module = tree.get(name)
                handles.append(module.register_forward_pre_hook(
                    lambda m, a, scope=scope, name=name: on_input(scope, name, m, a)))
                handles.append(module.register_forward_hook(
                    lambda m, a, o, scope=scope, name=name: on_output(scope, name, m, a, o)))
        for name, module in tree.modules():  # after the recording hooks: a call counts once it is done
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: count(name, m, a, o)))
        with torch.no_grad():
            subject.adapter.forward(subject.model, subject.adapter.encode(0, min(2, len(subject))))
    finally:
        for handle in handles:
            handle.remove()
    alive.clear()
    joins: list[Join] = []
    for scope in scopes:
        joins.extend(_joins_in(scope))
    return joins


def _close(a: torch.Tensor, b: torch.Tensor, scale: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(scale, 1e-6)))


def _joins_in(scope: _Scope) -> list[Join]:
    # One entry per distinct tensor: the module that completed it first computed it (dense before the
    # dropout that passes it on in eval mode; an inner module before the container returning it).
    distinct: dict[tuple[int, int], _Seen] = {}
    for s in scope.outputs:
        distinct.setdefault(s.ident, s)
    outputs = sorted(distinct.values(), key=lambda s: s.order)
    candidates = list(outputs) + ([scope.block_input] if scope.block_input is not None else [])
    sites = list(scope.inputs)
    if scope.block_output is not None:
        sites.append(scope.block_output)
    found: dict[frozenset[tuple[int, int]], Join] = {}
    for site in sites:
        total = site.tensor
        scale = float(total.abs().max()) if total.numel() else 0.0
        if scale == 0.0 or not math.isfinite(scale):
            continue  # nothing to split, or NaN/Inf (the inventory reports those)
        pairs = []
        for a in outputs:
            if a.order >= site.order or a.tensor.shape != total.shape or a.ident == site.ident:
                continue
            rest: torch.Tensor | None = None
            for b in candidates:
                if b is a or b.order >= site.order or b.ident in (a.ident, site.ident) or b.tensor.shape != total.shape:
                    continue
                # The sums must add up first (three scalars); only then compare element by element.
                if abs(site.total - a.total - b.total) > 1e-4 * (site.l1 + a.l1 + b.l1):
                    continue
                if rest is None:
                    rest = total - a.tensor
                    if float(rest.abs().max()) <= 1e-6 * scale or _close(a.tensor, total, scale):
                        break  # a summand of (almost) zero is not a join
                if _close(rest, b.tensor, scale):
                    pairs.append((a, b))
        if not pairs:
            continue
        # A layer that is close to the identity (a freshly initialised BatchNorm) makes its input pass for
        # its output: of the pairs that add up, the summands are the latest tensors, those nearest the sum.
        a, b = max(pairs, key=lambda ab: (min(ab[0].order, ab[1].order), max(ab[0].order, ab[1].order)))
        found.setdefault(frozenset({a.ident, b.ident}), _join(scope, site, a, b))
    return list(found.values())


def _read_elsewhere(scope: _Scope, summand: _Seen, site: _Seen) -> bool:
    """Whether a module other than the sum's reads the summand (pass-throughs returning it unchanged aside)."""
    passes = {s.module for s in scope.outputs if s.ident == summand.ident}
    return any(s.ident == summand.ident and s.module not in passes and s is not site for s in scope.inputs) or \
        summand is scope.block_input


def _join(scope: _Scope, site: _Seen, a: _Seen, b: _Seen) -> Join:
    where = "output" if site is scope.block_output else "input"
    sum_site = SumSite(module=site.module, where=where, call=site.call)
    summands = sorted((a, b), key=lambda s: s.order)
    branches = tuple(SumSite(s.module, "output", s.call) for s in summands if not _read_elsewhere(scope, s, site))
    streams = [s for s in summands if _read_elsewhere(scope, s, site)]
    stream = None
    if streams:
        s = streams[0]
        stream = f"<input of {scope.name or 'the model'}>" if s is scope.block_input else s.module
    return Join(block=scope.name, site=sum_site, branches=branches, stream=stream)
