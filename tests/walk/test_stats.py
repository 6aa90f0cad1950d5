"""One output's summary is exactly the float32 reductions it stands for, whichever shortcut computed it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from auditor.walk.stats import Scratch, summarize


def _reference(x: torch.Tensor) -> tuple[float, float, float, float, int]:
    """mean, m2, min, max and non-zero count as the walk has always defined them: a float32 sum and dot
    product (E[x^2] - E[x]^2), the extremes, and an exact count."""
    flat = x.reshape(-1)
    n = flat.numel()
    mean, sq = flat.sum().item() / n, torch.dot(flat, flat).item() / n
    return mean, max(sq - mean * mean, 0.0) * n, flat.min().item(), flat.max().item(), int(torch.count_nonzero(flat))


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, 12, 12, generator=g)
    return {
        "mixed signs": x,
        "relu (zeros, min 0)": torch.relu(x),
        "all positive": x.abs() + 0.5,
        "all negative": -(x.abs() + 0.5),
        "negative with zeros": -torch.relu(x),
        "all zero": torch.zeros(4, 6),
        "tokens": torch.randn(4, 7, 24, generator=g),
    }


@pytest.mark.parametrize("kind", list(_tensors()))
def test_a_summary_equals_the_float32_reductions_bit_for_bit(kind: str) -> None:
    x = _tensors()[kind]
    s = summarize(x, nn.Conv2d(1, 1, 1) if x.dim() == 4 else nn.Linear(1, 1), Scratch())
    mean, m2, lo, hi, nonzero = _reference(x)
    assert (s.n, s.mean, s.m2, s.min, s.max, s.nonzero, s.nan, s.inf) == (x.numel(), mean, m2, lo, hi, nonzero, 0, 0)


def test_per_unit_activity_is_read_where_zeros_are_and_only_then() -> None:
    x = torch.randn(8, 5, 3, 3).abs() + 0.1
    x[:, 2] = 0.0  # channel 2 never fires
    conv = nn.Conv2d(1, 1, 1)
    s = summarize(x, conv, Scratch())
    assert s.alive is not None and s.alive.tolist() == [True, True, False, True, True]
    assert summarize(x.abs() + 1.0, conv, Scratch()).alive is None  # no zeros: nothing can be dead
    negative = -x
    s = summarize(negative, conv, Scratch())
    assert s.alive is not None and s.alive.tolist() == [True, True, False, True, True]


def test_a_non_finite_output_is_counted_exactly_and_summarized_over_its_finite_values() -> None:
    x = torch.tensor([[1.0, float("nan"), 3.0], [float("inf"), 0.0, 2.0]])
    s = summarize(x, nn.Linear(1, 1), Scratch())
    assert (s.nan, s.inf, s.nonzero, s.n) == (1, 1, 5, 4)
    assert math.isclose(s.mean, 1.5) and (s.min, s.max) == (0.0, 3.0)
