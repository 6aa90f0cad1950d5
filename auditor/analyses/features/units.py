"""Reading one unit of a module's output, with gradients, the way the capture reads it without.

The capture records a unit's activation on a sample as its largest value over positions (tokens, or
the cells of a conv map), padding excluded (`auditor.walk.collectors.peak`). The objectives of the
optimizations read the same view of the output, so the activation an optimized input reaches and the
largest one a real sample gave are the same number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from auditor.walk.records import iter_tensors
from auditor.walk.stats import unit_dim

Objective = Literal["channel", "neuron", "peak"]
"""`channel`: the mean of the unit over positions (Lucid's channel); `neuron`: its value at the centre
position (Lucid's neuron); `peak`: its largest value over positions (what the capture records). A linear
unit or a class logit has one position, so the three agree."""


def unit_view(t: torch.Tensor, module: nn.Module) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(batch, positions, units) view of a module output, and the spatial shape of its positions."""
    udim = unit_dim(t, module)
    if udim is None:
        raise ValueError(f"the output of {type(module).__name__} {tuple(t.shape)} has no units")
    x = t.movedim(udim, -1)
    spatial = tuple(x.shape[1:-1])
    return x.reshape(x.shape[0], -1, x.shape[-1]), spatial


def centre_position(spatial: tuple[int, ...]) -> int:
    """The flat index of the centre position of a map (row-major), 0 for a single position."""
    index = 0
    for size in spatial:
        index = index * size + size // 2
    return index


def unit_values(t: torch.Tensor, module: nn.Module, units: torch.Tensor, objective: Objective,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """(batch,) the objective of unit `units[i]` on sample i; differentiable.

    `valid` (batch, positions) excludes padded tokens from `peak` and `channel`.
    """
    x, spatial = unit_view(t, module)
    picked = x.gather(2, units.to(x.device).view(-1, 1, 1).expand(-1, x.shape[1], 1)).squeeze(2)  # (batch, positions)
    if objective == "neuron":
        return picked[:, centre_position(spatial)]
    if objective == "channel":
        if valid is None:
            return picked.mean(dim=1)
        w = valid.to(picked.dtype)
        return (picked * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
    if valid is not None:
        picked = picked.masked_fill(~valid.bool(), float("-inf"))
    return picked.max(dim=1).values


class _Reached(Exception):
    """Raised by a hook once the module of interest has returned: the rest of the forward is not needed."""


def run_to(module: nn.Module, forward: Callable[[], object], *, call: int = 1) -> torch.Tensor:
    """Runs `forward` only as far as the `call`-th call of `module` (1-based: a module used more than once per
    forward), and returns (a copy of) its output.

    The layers after it do not run: a token search on a middle layer of a transformer costs half a forward.
    """
    kept: dict[str, torch.Tensor] = {}
    seen = [0]

    def stop(m: nn.Module, args: Any, output: Any) -> None:
        seen[0] += 1
        if seen[0] < call:
            return
        first = next((x for x in iter_tensors(output) if x.is_floating_point()), None)
        if first is not None:
            kept["out"] = first.clone()
            raise _Reached

    handle = module.register_forward_hook(stop)
    try:
        forward()
    except _Reached:
        pass
    finally:
        handle.remove()
    if "out" not in kept:
        which = f"call {call} of " if call > 1 else ""
        raise RuntimeError(f"{which}{type(module).__name__} did not run in the forward")
    return kept["out"]


@contextmanager
def output_of(module: nn.Module, *, call: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Keeps the primary tensor `module` returns on its last call (or on its `call`-th of each forward, counted
    from the block's start: one forward per block), for the length of a `with` block.

    A copy: an in-place op after the module (a ReLU with `inplace=True`) would rewrite the output itself.
    """
    kept: dict[str, torch.Tensor] = {}
    seen = [0]

    def keep(m: nn.Module, args: Any, output: Any) -> None:
        seen[0] += 1
        if call is not None and seen[0] != call:
            return
        first = next((x for x in iter_tensors(output) if x.is_floating_point()), None)
        if first is not None:
            kept["out"] = first.clone()

    handle = module.register_forward_hook(keep)
    try:
        yield kept
    finally:
        handle.remove()


@contextmanager
def tuned_threads() -> Iterator[Callable[[], None]]:
    """For a loop of small steps: yields `tick`, to call at the start of every step. Step 1 runs with torch's
    thread count and step 2 with one thread, both timed; the faster count is kept for the rest of the loop.

    A 16×16 image through a small CNN takes ~9 ms on one thread and ~300 ms on two when the cores are
    busy with other work (measured on the 2-core demo machine): intra-op threads only pay off on large
    steps. The thread count is restored on exit.
    """
    original = torch.get_num_threads()
    state: dict[str, float] = {"step": 0.0, "last": 0.0, "many": 0.0}

    def tick() -> None:
        now = time.perf_counter()
        step = int(state["step"])
        if step == 2:
            state["many"] = now - state["last"]
            torch.set_num_threads(1)
        elif step == 3 and original > 1 and state["many"] < now - state["last"]:
            torch.set_num_threads(original)
        state["step"] = step + 1
        state["last"] = now

    try:
        yield tick
    finally:
        torch.set_num_threads(original)
