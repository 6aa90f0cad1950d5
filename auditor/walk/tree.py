"""The module tree: every `named_modules()` entry with its type, parameters, depth and parent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Threshold, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.Softsign,
    nn.Hardshrink, nn.Softshrink, nn.Tanhshrink, nn.LogSigmoid, nn.GLU,
)
# Activations of other libraries, by name: transformers' GELUActivation, timm's Swish, ...
_ACTIVATION_NAME = re.compile(r"ReLU|GELU|SiLU|Swish|Mish|Activation$")


def is_activation(module: nn.Module) -> bool:
    """An element-wise activation module (ReLU family and the like): where a unit can die."""
    return isinstance(module, _ACTIVATIONS) or _ACTIVATION_NAME.search(type(module).__name__) is not None


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
    activation: bool = False
    """An element-wise activation module (see `is_activation`)."""


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
                activation=is_activation(module),
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
