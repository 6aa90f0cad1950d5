"""Tiny fixed models used across the test suite: small enough to reason about, built without downloads.

Every factory seeds its own initialisation (without touching the global RNG), so the same factory always
returns the same weights: `tests.models:build_tiny_cnn` is a valid `--model` for `auditor run`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


def _seeded(build: Callable[[], M], seed: int = 0) -> M:
    """Builds a module with a fixed seed, leaving the caller's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class TinyCNN(nn.Module):
    """1×8×8 images → conv(1→4) → in-place ReLU → maxpool → linear → 3 class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


class TwiceUsed(nn.Module):
    """One nn.Linear applied twice per forward (a reused module), then a 3-class head; input (batch, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.shared(torch.relu(self.shared(x))))


class DictOutput(nn.Module):
    """A TinyCNN whose forward returns `{"logits": ..., "aux": ...}`, like many research models."""

    def __init__(self) -> None:
        super().__init__()
        self.body = TinyCNN()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.body(x)
        return {"logits": logits, "aux": logits.mean(dim=1)}


class DictNoLogits(nn.Module):
    """A TinyCNN whose forward returns `{"a": ..., "b": ...}`: two tensors and no `logits` to pick."""

    def __init__(self) -> None:
        super().__init__()
        self.body = TinyCNN()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.body(x)
        return {"a": logits, "b": logits * 2}


def build_tiny_cnn() -> TinyCNN:
    return _seeded(TinyCNN)


def build_twice_used() -> TwiceUsed:
    return _seeded(TwiceUsed)


def build_dict_output() -> DictOutput:
    return _seeded(DictOutput)


def build_dict_no_logits() -> DictNoLogits:
    return _seeded(DictNoLogits)


def build_not_a_module() -> dict[str, int]:
    """A factory that forgets to return a module."""
    return {"layers": 2}
