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


class WrappedTinyCNN(nn.Module):
    """A TinyCNN held in an attribute called `model`: its own keys start with `model.`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = TinyCNN()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def build_wrapped_tiny_cnn() -> WrappedTinyCNN:
    return _seeded(WrappedTinyCNN)


def build_not_a_module() -> dict[str, int]:
    """A factory that forgets to return a module."""
    return {"layers": 2}


class LambdaLayer(nn.Module):
    """A parameter-free module around a function, as CIFAR ResNets wrap their option-A shortcut."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class CifarBlock(nn.Module):
    """The BasicBlock of the widely published CIFAR ResNets: functional ReLUs and, where the width
    doubles, an option-A shortcut that subsamples and zero-pads half of its output channels."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(
                lambda x: nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0.0))

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return nn.functional.relu(out)


class CifarResNet(nn.Module):
    """A CIFAR-style ResNet-8 (one block per stage, widths 16/32/64) on 3×16×16 images, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(CifarBlock(16, 16))
        self.layer2 = nn.Sequential(CifarBlock(16, 32, stride=2))
        self.layer3 = nn.Sequential(CifarBlock(32, 64, stride=2))
        self.linear = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = nn.functional.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def build_cifar_resnet() -> CifarResNet:
    return _seeded(CifarResNet)
