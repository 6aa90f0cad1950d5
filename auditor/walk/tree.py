"""The module tree: every `named_modules()` entry with its type, parameters, depth and parent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModuleNode:
    """One module, named by its dotted `named_modules()` path ('' is the model itself)."""

    name: str
    type: str
    depth: int
    parent: str | None
    params: int
    """Parameters of the module and its children, each shared tensor counted once."""
    trainable_params: int
    own_params: int
    """Parameters registered directly on this module (not its children)."""
    aliases: tuple[str, ...]
    """Other paths under which the same module object is registered (shared modules)."""


def _count(params: Iterator[nn.Parameter]) -> tuple[int, int]:
    seen: set[int] = set()
    total = trainable = 0
    for p in params:
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


class ModuleTree:
    """The model's modules in `named_modules()` order, addressable by name."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._modules: dict[str, nn.Module] = dict(model.named_modules())
        aliases: dict[int, list[str]] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            aliases.setdefault(id(module), []).append(name)
        nodes: dict[str, ModuleNode] = {}
        for name, module in self._modules.items():
            total, trainable = _count(module.parameters())
            own, _ = _count(module.parameters(recurse=False))
            nodes[name] = ModuleNode(
                name=name,
                type=type(module).__name__,
                depth=0 if name == "" else name.count(".") + 1,
                parent=None if name == "" else name.rpartition(".")[0],
                params=total,
                trainable_params=trainable,
                own_params=own,
                aliases=tuple(a for a in aliases.get(id(module), []) if a != name),
            )
        self.nodes = nodes

    @property
    def names(self) -> list[str]:
        return list(self._modules)

    def modules(self) -> Iterator[tuple[str, nn.Module]]:
        yield from self._modules.items()

    def get(self, name: str) -> nn.Module:
        return self._modules[name]

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules
