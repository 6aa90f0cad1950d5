"""Blocks: the modules a reader would call the model's layers, defined once for every analysis.

- members of a `ModuleList` or `Sequential` whose children are all of one type (transformer layers,
  residual blocks): kind "layer";
- embeddings (a module whose class name ends in "Embeddings", or an `nn.Embedding` outside one): kind
  "embeddings";
- beside a repeated stack, its siblings with parameters that hold no block themselves (a ResNet's stem
  convolution, a generator's projection and output modules): kind "stage";
- in a model with no such repeated stack, its top-level modules, with a `Sequential` among them replaced
  by its children (the digits CNN: conv, norm, activation, pooling...): kind "stage";
  modules that pass their input through in eval mode (dropout, identity, flatten) are left out, since
  removing one removes its input;
- the head: the last module with parameters along the model's last children with parameters (a
  classifier's final linear layer): kind "head". A bare encoder has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from auditor.walk.tree import ModuleTree

BlockKind = Literal["embeddings", "layer", "stage", "head"]
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
                 nn.Flatten, nn.Unflatten)


@dataclass(frozen=True)
class Block:
    """One block: its module name, what kind of block it is, and the group of repeated blocks it is in."""

    name: str
    kind: BlockKind
    group: str | None = None
    """The container of a repeated stack ("encoder.layer"); blocks of one group share type and role."""


def _is_repeated(module: nn.Module) -> bool:
    """A `ModuleList` of layers of one type (one layer is still a stack: a 1-layer transformer), or a
    `Sequential` of at least two modules of one type."""
    if not isinstance(module, (nn.ModuleList, nn.Sequential)):
        return False
    children = list(module.children())
    least = 1 if isinstance(module, nn.ModuleList) else 2
    return len(children) >= least and len({type(child) for child in children}) == 1


def _is_embeddings(module: nn.Module) -> bool:
    return type(module).__name__.endswith("Embeddings") or isinstance(module, nn.Embedding)


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _join(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def find_blocks(tree: ModuleTree, *, has_head: bool = True) -> list[Block]:
    """The blocks of the model in `tree`, in `named_modules()` order."""
    found: dict[str, Block] = {}
    stack_parents: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module, parent: tuple[str, nn.Module] | None) -> None:
        if _is_repeated(module):
            for child_name, _ in module.named_children():
                found[_join(name, child_name)] = Block(_join(name, child_name), "layer", group=name)
            if parent is not None:
                stack_parents.append(parent)
            return
        if name and _is_embeddings(module):
            found[name] = Block(name, "embeddings")
            return
        for child_name, child in module.named_children():
            visit(_join(name, child_name), child, (name, module))

    visit("", tree.model, None)
    for parent_name, parent in stack_parents:
        for child_name, child in parent.named_children():
            name = _join(parent_name, child_name)
            holds_blocks = any(other.startswith(f"{name}.") for other in found)
            if name not in found and not holds_blocks and _has_params(child):
                found[name] = Block(name, "stage")
    if not any(b.kind == "layer" for b in found.values()):
        for name, child in _stages(tree.model):
            if not isinstance(child, _PASS_THROUGH) and name not in found:
                found[name] = Block(name, "stage")
    if has_head:
        head = _head(tree.model)
        if head:
            found[head] = Block(head, "head")
    order = {name: i for i, name in enumerate(tree.names)}
    return sorted(found.values(), key=lambda b: order.get(b.name, len(order)))


def _stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """A model with nothing repeated: the children of its `Sequential`s, and its other top-level modules."""
    stages: list[tuple[str, nn.Module]] = []

    def visit(name: str, module: nn.Module, top: bool) -> None:
        if isinstance(module, nn.Sequential) or top:
            for child_name, child in module.named_children():
                child_full = _join(name, child_name)
                if isinstance(child, nn.Sequential):
                    visit(child_full, child, False)
                else:
                    stages.append((child_full, child))
            return

    visit("", model, True)
    return stages


def _head(model: nn.Module) -> str:
    """Follows the last child with parameters down to a leaf: the layer that writes the scores."""
    name, module = "", model
    while True:
        children = [(n, c) for n, c in module.named_children() if _has_params(c)]
        if not children:
            return name
        child_name, module = children[-1]
        name = _join(name, child_name)
