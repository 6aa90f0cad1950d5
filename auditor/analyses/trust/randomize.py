"""Cascading model-parameter randomization (Adebayo et al., 2018), on a copy of the model.

The groups are the model's blocks that own parameters (its head, layers, stages, embeddings), plus any
parameter-owning module outside every block, each once, ordered from the output down (by the order the
forward first reached them). Step k re-initializes groups 0..k of a deep copy: the user's model is never
touched. Group j is always re-initialized from seed + j, so step k computed alone (`randomized_copy`, what
one task of an executor does) has the weights the cumulative walk (`cascade`) has at step k. A module is
re-initialized by its own `reset_parameters` where it has one (Linear, Conv, Embedding, LayerNorm, BatchNorm:
the initialization it was built with); any other parameter is redrawn from a normal with its own mean and
standard deviation. The draws come from a private generator state
(`torch.random.fork_rng`), so the audit's global random state is left as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from auditor.walk.blocks import Block


@dataclass(frozen=True)
class Group:
    """One cascade step: a named module whose parameters (recursively) are re-initialized at that step."""

    name: str
    kind: str
    parameters: int


def cascade_groups(model: nn.Module, blocks: Sequence[Block], order: Mapping[str, int | None]) -> list[Group]:
    """The randomization steps, top (output) first."""
    modules = dict(model.named_modules())
    chosen: list[tuple[str, str]] = []
    for block in blocks:
        if block.name in modules and any(True for _ in modules[block.name].parameters()):
            if not any(_inside(block.name, other) for other, _ in chosen):
                chosen = [(n, k) for n, k in chosen if not _inside(n, block.name)] + [(block.name, block.kind)]
    for name, module in modules.items():  # parameters no block covers (a pooler between the layers and head)
        if name and any(True for _ in module.parameters(recurse=False)) \
                and not any(_inside(name, other) or name == other for other, _ in chosen):
            chosen.append((name, "module"))
    if not chosen and any(True for _ in model.parameters()):
        chosen = [("", "model")]
    ranked = sorted(chosen, key=lambda nk: -1 if order.get(nk[0]) is None else order[nk[0]] or 0, reverse=True)
    return [Group(n, k, sum(p.numel() for p in modules[n].parameters())) for n, k in ranked]


def _inside(name: str, parent: str) -> bool:
    return parent == "" or name.startswith(parent + ".")


def reinitialize(module: nn.Module) -> None:
    """Re-initializes every parameter under `module` in place (see the module docstring)."""
    done: set[int] = set()
    with torch.no_grad():
        for sub in module.modules():
            own = list(sub.parameters(recurse=False))
            reset = getattr(sub, "reset_parameters", None)
            if own and callable(reset):
                reset()
                done.update(id(p) for p in own)
        for p in module.parameters():
            if id(p) not in done:
                std = float(p.std()) if p.numel() > 1 else 1.0
                p.normal_(float(p.mean()), std if std > 0 else 1.0)


def cascade(model: nn.Module, groups: Sequence[Group], *, seed: int) -> Iterator[tuple[Group, nn.Module]]:
    """(group k, a copy with groups 0..k re-initialized), step by step: one copy of `model`, re-initialized
    cumulatively, group k from seed + k in a private generator state."""
    clone = copy.deepcopy(model).eval()
    for p in clone.parameters():
        p.requires_grad_(True)
    for k, group in enumerate(groups):
        reinitialize_step(clone, group, k, seed=seed)
        yield group, clone


def reinitialize_step(clone: nn.Module, group: Group, k: int, *, seed: int) -> None:
    """Step k of the cascade on `clone` (a copy, at step k - 1): re-initializes `group` from seed + k."""
    with torch.random.fork_rng():
        torch.manual_seed(seed + k)
        reinitialize(clone.get_submodule(group.name))


def randomized_copy(model: nn.Module, groups: Sequence[Group], step: int, *, seed: int) -> nn.Module:
    """Step `step` of the cascade alone: a copy of `model` with groups 0..step re-initialized, the same seeds in
    the same order as `cascade`, so the same weights."""
    if not 0 <= step < len(groups):
        raise IndexError(f"cascade step {step} of {len(groups)}")
    *_, (_, clone) = cascade(model, groups[:step + 1], seed=seed)
    return clone
