"""Sorting all-zero units into dead, pruned and structural: where the weights of a unit live, per layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditor.walk.units import zero_weight_units


def _zero_unit(module: nn.Module, unit: int, dim: int) -> nn.Module:
    with torch.no_grad():
        module.weight.select(dim, unit).zero_()
    return module


@pytest.mark.parametrize(("module", "dim", "units"), [
    (nn.Linear(5, 4), 0, 4),
    (nn.Conv2d(3, 4, 3), 0, 4),
    (nn.ConvTranspose2d(3, 4, 3), 1, 4),
    (nn.Embedding(10, 4), 1, 4),
    (nn.BatchNorm2d(4), 0, 4),
    (nn.LayerNorm(4), 0, 4),
])
def test_zero_weights_are_found_per_output_unit(module: nn.Module, dim: int, units: int) -> None:
    found = zero_weight_units(_zero_unit(module, 2, dim), units)

    assert found is not None and found.tolist() == [False, False, True, False]


def test_a_square_gpt2_conv1d_reads_its_units_from_columns() -> None:
    class Conv1D(nn.Module):  # transformers.pytorch_utils.Conv1D stores (in, out)
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(4, 4))

    module = _zero_unit(Conv1D(), 1, dim=1)

    found = zero_weight_units(module, 4)
    assert found is not None and found.tolist() == [False, True, False, False]


def test_an_unknown_layout_says_so() -> None:
    assert zero_weight_units(nn.Linear(5, 4), 3) is None  # units do not match the weight
    assert zero_weight_units(nn.MultiheadAttention(4, 2), 4) is None  # no `weight`
    assert zero_weight_units(nn.ConvTranspose2d(4, 4, 3, groups=2), 4) is None
