"""Residual joins: where two computed tensors are added, found on a 2-sample forward.

A join is a sum `s = a + b` inside a block, read back from the tensors the modules exchange: `s` is the
input of some module (the LayerNorm after a transformer sublayer, the ReLU module after a ResNet block's
sum) or the block's own output, and `a`, `b` are outputs of earlier modules or the block's input. No graph
tracing: the sum is checked numerically, which works on any model whose forward a hook can watch.
Where a functional activation follows the sum (`F.relu(self.bn2(...) + self.shortcut(x))`, or
`out += self.shortcut(x); return F.relu(out)`: most CIFAR ResNets), no hook ever sees the sum; there the
block's output is checked against act(a + b) for the element-wise activations of `ACTIVATIONS`.

A summand read only by the sum is a *branch* (a transformer sublayer's output projection, a ResNet
block's last norm); a summand that other modules read too is the *stream* (the residual stream, a
shortcut). Where the width changes, both summands are read only by the sum; the *shortcut* is then the
one computed from the block's input by modules alone and with fewer parameters than the other (an
option-A `LambdaLayer` that subsamples and zero-pads, a 1×1 convolution and its norm): it is the stream.
The gradient at a branch is the gradient at the sum, so a branch's conductance is its share of the
sum's, and the stream's share is the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auditor.subject import Subject
from auditor.walk.blocks import Block
from auditor.walk.records import iter_tensors
from auditor.walk.tree import ModuleTree

MAX_SCOPE_MODULES = 400
"""A search scope (a block, or the whole model when it has no repeated blocks) larger than this is skipped."""

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,
    "relu6": F.relu6,
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
    "elu": F.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}
"""Element-wise activations (with their default parameters) a block may apply to its sum before returning it."""

_PROBE = 256
"""Elements compared first, evenly spaced, before a whole tensor is (an activation's cheap pre-check)."""


@dataclass(frozen=True)
class SumSite:
    """Where a sum can be read: the input of a module at one of its calls, or a module's output."""

    module: str
    where: str
    """"input" (the first tensor argument) or "output"."""
    call: int = 0
    """Which call of the module in one forward (a ReLU object used twice in a ResNet block)."""
    through: str | None = None
    """The element-wise activation (a key of `ACTIVATIONS`) between the sum and this site: the site holds
    act(sum), the sum itself being no tensor a hook sees. Its conductance is the sum's (an element-wise
    function passes on what flows through it), up to the integration error at the activation's kinks."""


def describe_site(site: SumSite) -> str:
    """Where a sum is read, in words: "input of layer1.0.relu", "output of layer1.0 (= relu(sum))"."""
    return f"{site.where} of {site.module}" + (f" (= {site.through}(sum))" if site.through else "")


@dataclass(frozen=True)
class Join:
    """One residual sum in a block: its site, the branches that feed only it, and the stream."""

    block: str
    site: SumSite
    branches: tuple[SumSite, ...]
    """Outputs of modules that are summands read by nothing else."""
    stream: str | None
    """The other summand: a module's output (a shortcut's, where the width changes), "<input of BLOCK>", or
    None when both summands are branches."""


@dataclass(eq=False)  # compared by identity: each is one recording
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
        # The same positions for every tensor of one shape, so that probes of summands add up like the tensors.
        self.probe = flat[torch.linspace(0, flat.numel() - 1, min(_PROBE, flat.numel())).round().long()] \
            if flat.numel() else flat


@dataclass
class _Scope:
    name: str
    members: set[str]
    params: dict[str, frozenset[int]] = field(default_factory=dict)
    """Member -> the ids of its parameters (its children's included)."""
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
            params = {n: frozenset(id(p) for p in tree.get(n).parameters()) for n in members}
            scopes.append(_Scope(block, members, params))
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
        pairs = _sum_pairs(site, outputs, candidates, scale)
        through = None
        if not pairs and site is scope.block_output and scope.name and not found:
            # No hook saw a sum in this block (a ReLU module reading it would have): is its output act(a + b)?
            pairs, through = _activation_pairs(site, outputs, candidates, scale)
        if not pairs:
            continue
        # A layer that is close to the identity (a freshly initialised BatchNorm) makes its input pass for
        # its output: of the pairs that add up, the summands are the latest tensors, those nearest the sum.
        a, b = max(pairs, key=lambda ab: (min(ab[0].order, ab[1].order), max(ab[0].order, ab[1].order)))
        found.setdefault(frozenset({a.ident, b.ident}), _join(scope, site, a, b, through, distinct))
    return list(found.values())


def _sum_pairs(site: _Seen, outputs: list[_Seen], candidates: list[_Seen], scale: float) -> list[tuple[_Seen, _Seen]]:
    """The pairs (a, b) of earlier tensors with a + b = the site's tensor."""
    total = site.tensor
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
    return pairs


def _activation_pairs(site: _Seen, outputs: list[_Seen], candidates: list[_Seen],
                      scale: float) -> tuple[list[tuple[_Seen, _Seen]], str | None]:
    """The pairs (a, b) of earlier tensors with act(a + b) = the site's tensor, for the first activation that
    has any, and its name. Every pair is checked on a few evenly spaced elements at once; only the pairs that
    pass are compared whole. A pair of which one summand alone gives the site is no join."""
    y = site.tensor
    lefts = [a for a in outputs if a.order < site.order and a.tensor.shape == y.shape and a.ident != site.ident]
    rights = [b for b in candidates if b.order < site.order and b.tensor.shape == y.shape and b.ident != site.ident]
    if not lefts or not rights:
        return [], None
    sums = torch.stack([a.probe for a in lefts])[:, None, :] + torch.stack([b.probe for b in rights])[None, :, :]
    tolerance = 1e-5 * max(scale, 1e-6) + 1e-4 * site.probe.abs()
    for name, act in ACTIVATIONS.items():
        hits = ((act(sums) - site.probe).abs() <= tolerance).all(dim=2)
        pairs = []
        for i, j in hits.nonzero().tolist():
            a, b = lefts[i], rights[j]
            if b is a or b.ident == a.ident:
                continue
            if not _close(act(a.tensor + b.tensor), y, scale):
                continue
            if _close(act(a.tensor), y, scale) or _close(act(b.tensor), y, scale):
                continue
            pairs.append((a, b))
        if pairs:
            return pairs, name
    return [], None


def _read_elsewhere(scope: _Scope, summand: _Seen, site: _Seen) -> bool:
    """Whether a module other than the sum's reads the summand (pass-throughs returning it unchanged aside)."""
    passes = {s.module for s in scope.outputs if s.ident == summand.ident}
    return any(s.ident == summand.ident and s.module not in passes and s is not site for s in scope.inputs) or \
        summand is scope.block_input


def _chain(scope: _Scope, summand: _Seen, producers: dict[tuple[int, int], _Seen]) -> list[str] | None:
    """The modules that compute the summand from the block's input, each from the previous one's output, or
    None where a step is no module's (a functional op, a tensor from outside the block)."""
    assert scope.block_input is not None
    start = scope.block_input.ident
    arguments = {(s.module, s.call): s for s in scope.inputs}
    chain: list[str] = []
    current = summand
    while current.ident != start:
        chain.append(current.module)
        argument = arguments.get((current.module, current.call))
        if argument is None:
            return None
        if argument.ident == start:
            return chain
        previous = producers.get(argument.ident)
        if previous is None or previous.order >= current.order:
            return None
        current = previous
    return chain


def _params(scope: _Scope, modules: list[str]) -> frozenset[int]:
    return frozenset().union(*(scope.params.get(m, frozenset()) for m in modules))


def _shortcut(scope: _Scope, site: _Seen, summands: list[_Seen],
              producers: dict[tuple[int, int], _Seen]) -> _Seen | None:
    """Of two summands read only by the sum, the shortcut: computed from the block's input by modules alone
    (an option-A `LambdaLayer`, a 1×1 convolution and its norm) and with fewer parameters than the other
    (than all else the block ran before the sum, where the other's path is not all modules). None when
    neither, or both alike, qualify (two parallel branches of one size)."""
    if not scope.name or scope.block_input is None:
        return None
    chains = [_chain(scope, s, producers) for s in summands]
    costs = [(len(_params(scope, c)), len(c)) if c is not None else None for c in chains]
    complete = [i for i, c in enumerate(chains) if c is not None]
    if len(complete) == 2:
        first, second = costs
        assert first is not None and second is not None
        return summands[0] if first < second else summands[1] if second < first else None
    if len(complete) == 1:
        i = complete[0]
        chain = chains[i]
        assert chain is not None
        own = _params(scope, chain)
        ran = _params(scope, [s.module for s in scope.outputs if s.order < site.order]) - own
        return summands[i] if len(own) < len(ran) else None
    return None


def _outermost(scope: _Scope, summand: _Seen) -> str:
    """The outermost module returning the summand as its own output (`downsample`, not `downsample.1`)."""
    same = [s for s in scope.outputs if s.ident == summand.ident
            and (s.module == summand.module or summand.module.startswith(f"{s.module}."))]
    return max(same, key=lambda s: s.order).module if same else summand.module


def _join(scope: _Scope, site: _Seen, a: _Seen, b: _Seen, through: str | None,
          producers: dict[tuple[int, int], _Seen]) -> Join:
    where = "output" if site is scope.block_output else "input"
    sum_site = SumSite(module=site.module, where=where, call=site.call, through=through)
    summands = sorted((a, b), key=lambda s: s.order)
    streams = [s for s in summands if _read_elsewhere(scope, s, site)]
    stream: str | None = None
    if streams:
        s = streams[0]
        stream = f"<input of {scope.name or 'the model'}>" if s is scope.block_input else s.module
    else:
        shortcut = _shortcut(scope, site, summands, producers)
        if shortcut is not None:
            streams, stream = [shortcut], _outermost(scope, shortcut)
    branches = tuple(SumSite(s.module, "output", s.call) for s in summands if not any(s is t for t in streams))
    return Join(block=scope.name, site=sum_site, branches=branches, stream=stream)
