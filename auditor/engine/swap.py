"""Recorded outputs and swapped forwards: copying a module's output (tensors cloned, containers rebuilt) and making
`module.forward` something else for the length of a block."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from auditor.walk.records import iter_tensors


def rebuildable(value: Any) -> bool:
    if value is None or isinstance(value, (torch.Tensor, int, float, bool, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(rebuildable(v) for v in value)
    if isinstance(value, Mapping):
        return all(rebuildable(v) for v in value.values())
    return False


def copy_value(value: Any, *, clone: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`value` with every tensor in it passed through `clone`, containers rebuilt (ModelOutputs keep their type)."""
    if isinstance(value, torch.Tensor):
        return clone(value)
    if isinstance(value, tuple):
        items = [copy_value(v, clone=clone) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [copy_value(v, clone=clone) for v in value]
    if isinstance(value, Mapping):
        result = copy.copy(value)
        for key in list(value.keys()):
            result[key] = copy_value(value[key], clone=clone)  # type: ignore[index]  # Mapping: rebuilt in place
        return result
    return value


def nbytes(value: Any) -> int:
    return sum(t.numel() * t.element_size() for t in iter_tensors(value))


@contextmanager
def forward_replaced(module: nn.Module, forward: Callable[..., Any]) -> Iterator[None]:
    """`module.forward` is `forward` for the length of the block; the class's own forward comes back after."""
    own = module.__dict__.get("forward")
    setattr(module, "forward", forward)  # noqa: B010  (an instance attribute shadows the class's method)
    try:
        yield
    finally:
        if own is not None:
            setattr(module, "forward", own)  # noqa: B010
        else:
            delattr(module, "forward")
