"""Planning a patched pass on cached prefixes: which patched module runs first, which modules before it may return
their recorded output instead of running, and the route a pass takes once the memory budget has chosen what is
recorded (`auditor.engine.prefix` runs it)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from auditor.engine.trace import Traced
from auditor.walk.patch import Patch


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


def ancestor(a: str, b: str) -> bool:
    """Is module `a` an ancestor of module `b` (the model itself is everyone's)."""
    return a == "" or b.startswith(f"{a}.")


def _constant(replacement: Any) -> bool:
    """Replacements that do not read the module's output (zeros, a broadcast constant)."""
    return isinstance(replacement, (str, torch.Tensor))


@dataclass
class Plan:
    first: str | None
    eligible: list[str]
    direct: str | None = None
    """"constant" or "recorded": how the first patched module's patch can stand in for its forward."""
    why: str | None = None


def plan_pass(patches: Mapping[str, Patch], traced: Mapping[str, Traced]) -> Plan:
    names = list(patches)
    if not names:
        return Plan(first=None, eligible=[], why="it patches nothing")
    unseen = [n for n in names if n not in traced or traced[n].calls == 0]
    if unseen:
        return Plan(first=None, eligible=[], why=f"{unseen[0]} did not run in the traced forward")
    first = min(names, key=lambda n: traced[n].start)
    start = traced[first].start
    eligible = [n for n, t in traced.items()
                if n and t.why_not is None and t.calls == 1 and t.end < start and not ancestor(n, first)]
    spec, record = patches[first], traced[first]
    direct = None
    if spec.weights is None and spec.output is not None and record.why_not is None:
        direct = "constant" if _constant(spec.output) and record.plain_tensor else "recorded"
    return Plan(first=first, eligible=eligible, direct=direct)


def outermost(names: Sequence[str]) -> list[str]:
    """The names none of whose ancestors is among them."""
    chosen = set(names)
    return [n for n in names if not any(ancestor(a, n) for a in _prefixes(n) if a in chosen)]


def _prefixes(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def estimate_shares(passes: Sequence[Mapping[str, Patch]], traced: Mapping[str, Traced],
                    seconds: Mapping[str, float]) -> list[float]:
    """Per patched pass, the share of a full forward it will run on cached prefixes, from per-module times
    (`time_modules`): 1 minus what it skips, assuming the memory budget holds what it needs."""
    weights = {name: max(float(seconds.get(name, 0.0)), 1e-9) for name in traced}
    total = weights.get("", 0.0)
    shares = []
    for patches in passes:
        plan = plan_pass(patches, traced)
        if plan.first is None or total <= 1e-9:
            shares.append(1.0)
            continue
        saved = sum(weights[n] for n in outermost(plan.eligible)) + (weights[plan.first] if plan.direct else 0.0)
        shares.append(max(0.0, 1.0 - min(saved / total, 1.0)))
    return shares


def route_of(plan: Plan, store: Mapping[str, list[Any]], traced: Mapping[str, Traced],
           weights: Mapping[str, float]) -> PassRoute:
    if plan.first is None:
        return PassRoute(first=None, full_forward=plan.why)
    replaced = tuple(outermost([n for n in plan.eligible if n in store]))
    direct = plan.direct == "constant" or (plan.direct == "recorded" and plan.first in store)
    total = weights.get("", 0.0)
    saved = sum(weights[n] for n in replaced) + (weights[plan.first] if direct else 0.0)
    skipped = min(saved / total, 1.0) if total > 1e-9 else None
    why = None
    if not replaced and not direct:
        before = [n for n, t in traced.items() if n and 0 <= t.end < traced[plan.first].start
                  and not ancestor(n, plan.first)]
        if not before:
            why = "it runs first"
        elif plan.eligible:
            why = "the memory budget left no room for what runs before it"
        else:
            reasons = sorted({w for n in before if (w := traced[n].why_not) is not None})
            why = "what runs before it cannot be recorded (" + "; ".join(reasons) + ")" if reasons else \
                "nothing before it can be recorded"
    return PassRoute(first=plan.first, replaced=replaced, patched_directly=direct, skipped=skipped, full_forward=why)
