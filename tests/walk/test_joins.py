"""Residual joins: found on the ways published ResNets write their blocks, and nowhere else."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditor.walk.joins import Join, SumSite, describe_site
from tests.contexts import make_context
from tests.models import RESNET_BLOCKS, build_two_stage_resnet


def _joins(model: nn.Module, *, samples: int = 4) -> dict[str, Join]:
    x = torch.randn(samples, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ctx = make_context(model, x, torch.zeros(samples, dtype=torch.long))
    return {j.block: j for j in ctx.joins}


# (variant, where the sum is read in a block, the branch's last module, the shortcut of the block that doubles
# the width: a parameter-free LambdaLayer that subsamples and zero-pads, or conv1x1 + bn)
EXPECTED = {
    "akamaster": (("", "output", 0, "relu"), "bn2", "shortcut"),
    "torchvision_basic": (("relu", "input", 1, None), "bn2", "downsample"),
    "torchvision_bottleneck": (("relu", "input", 2, None), "bn3", "downsample"),
    "functional": (("", "output", 0, "relu"), "bn2", "shortcut"),
}


@pytest.mark.parametrize("variant", sorted(RESNET_BLOCKS))
def test_every_block_of_a_resnet_joins_its_branch_and_its_shortcut(variant: str) -> None:
    joins = _joins(build_two_stage_resnet(variant))
    (module, where, call, through), branch, shortcut = EXPECTED[variant]
    assert sorted(joins) == ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    for block, join in joins.items():
        assert join.site == SumSite(f"{block}.{module}" if module else block, where, call, through)
        assert [b.module for b in join.branches] == [f"{block}.{branch}"]
    # Where the width doubles, the shortcut is read by the sum alone, like the branch: it is the summand
    # computed from the block's input by modules alone, with fewer parameters than the branch.
    assert joins["layer2.0"].stream == f"layer2.0.{shortcut}"
    # Elsewhere the stream is the block's input (an empty Sequential returns it as its own output).
    identity = "<input of {}>" if variant.startswith("torchvision") else "{}.shortcut"
    assert {joins[b].stream for b in ("layer1.0", "layer1.1", "layer2.1")} == \
        {identity.format(b) for b in ("layer1.0", "layer1.1", "layer2.1")}


def test_a_sum_read_through_an_activation_says_so() -> None:
    join = _joins(build_two_stage_resnet("akamaster"))["layer1.1"]
    assert describe_site(join.site) == "output of layer1.1 (= relu(sum))"


class Plain(nn.Module):
    """A block with a ReLU at its end and no residual sum: conv, bn, relu, conv, bn, relu."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu(self.bn2(self.conv2(nn.functional.relu(self.bn1(self.conv1(x))))))


class Parallel(nn.Module):
    """relu(a(x) + b(x)): two branches of one size, neither of them a shortcut."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu(self.a(x) + self.b(x))


class Squashed(nn.Module):
    """tanh(x + f(x)): another element-wise activation after the sum."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.f = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x + self.f(x))


class Stack(nn.Module):
    def __init__(self, block: type[nn.Module]) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.blocks = nn.Sequential(block(6), block(6), block(6))
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def test_a_block_ending_in_a_relu_without_a_sum_has_no_join() -> None:
    torch.manual_seed(0)
    assert _joins(Stack(Plain).eval()) == {}


def test_two_parallel_branches_of_one_size_are_both_branches_and_there_is_no_stream() -> None:
    torch.manual_seed(0)
    joins = _joins(Stack(Parallel))
    assert sorted(joins) == ["blocks.0", "blocks.1", "blocks.2"]
    for block, join in joins.items():
        assert [b.module for b in join.branches] == [f"{block}.a", f"{block}.b"] and join.stream is None
        assert join.site.through == "relu"


def test_other_element_wise_activations_after_the_sum_are_found_too() -> None:
    torch.manual_seed(0)
    joins = _joins(Stack(Squashed))
    assert {b: (j.site.through, [s.module for s in j.branches], j.stream) for b, j in joins.items()} == {
        f"blocks.{i}": ("tanh", [f"blocks.{i}.f"], f"<input of blocks.{i}>") for i in range(3)}
