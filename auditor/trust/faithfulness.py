"""Deletion and insertion curves (Petsiuk et al., 2018): does the attribution order predict what happens
when the input changes?

Deletion replaces a sample's positions by the fill (the attribution baseline: black or the data mean, pad
tokens for text; or a blurred image), most-attributed first, and follows the target's probability down;
insertion starts from the fill and puts the positions back in the same order. Each sample also runs
`random_orders` random orders. The areas under the curves (fraction removed on x, probability on y) are
compared per sample with the mean of the random
orders, each by a one-sided Wilcoxon signed-rank test over samples. Deletion decides (Petsiuk et al.'s
primary metric; insertion from a black or pad input passes through inputs far from the data, so it is
reported beside it but does not decide).

Cost per sample: at most 2 × (steps + 1) × (random_orders + methods) forwards, batched; inputs that repeat
(the start and end of every order, fractions that round to the same count) run once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import wilcoxon


@dataclass(frozen=True)
class Editable:
    """One sample as the perturbation sees it: which positions may change and how a batch of masks edits it."""

    positions: int
    """How many positions the order ranks (pixels, features or content tokens)."""
    build: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    """(rows, positions) bool masks, True = take the fill -> a batch of model inputs."""
    index: torch.Tensor
    """Where each ranked position sits in the sample's map (flattened)."""


def masks_for(order: torch.Tensor, fractions: np.ndarray) -> torch.Tensor:
    """(len(fractions), positions) masks: row j marks the first round(f_j × positions) of `order`."""
    n = order.numel()
    ranks = torch.empty(n, dtype=torch.long)
    ranks[order] = torch.arange(n)
    counts = torch.as_tensor(np.rint(fractions * n).astype(np.int64))
    return ranks[None, :] < counts[:, None]


def curves(editable: Editable, orders: list[torch.Tensor], fractions: np.ndarray,
           probability: Callable[[dict[str, torch.Tensor]], torch.Tensor], *,
           chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(orders, steps) deletion and insertion probabilities for one sample."""
    delete = torch.cat([masks_for(o, fractions) for o in orders])
    insert = torch.cat([~masks_for(o, fractions) for o in orders])
    masks = torch.cat([delete, insert])
    # Rows repeat: every order starts and ends at the same input, and with fewer positions than steps
    # neighbouring fractions round to the same count. Each distinct input runs once.
    unique, inverse = torch.unique(masks.to(torch.uint8), dim=0, return_inverse=True)
    values = []
    for start in range(0, unique.shape[0], chunk):
        values.append(probability(editable.build(unique[start:start + chunk].bool())).detach().float().cpu())
    p = torch.cat(values)[inverse].numpy().reshape(2, len(orders), len(fractions))
    return p[0], p[1]


def area(curve: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Area under each row of `curve` over the fractions (trapezoid rule)."""
    return np.asarray(np.trapezoid(curve, fractions, axis=-1))


@dataclass(frozen=True)
class Comparison:
    deletion: float
    insertion: float
    random_deletion: float
    random_insertion: float
    deletion_gain: float
    """Median over samples of (random orders' mean deletion area − the attribution order's): > 0 is better."""
    insertion_gain: float
    """Median over samples of (the attribution order's insertion area − random orders' mean): > 0 is better."""
    p_deletion: float
    """One-sided Wilcoxon signed-rank p-value that the attribution order deletes faster than random."""
    p_insertion: float
    samples: int


def _greater(diff: np.ndarray) -> float:
    if np.allclose(diff, 0.0):
        return 1.0
    return float(wilcoxon(diff, alternative="greater", zero_method="zsplit").pvalue)


def compare(attr_del: np.ndarray, attr_ins: np.ndarray, rand_del: np.ndarray, rand_ins: np.ndarray) -> Comparison:
    """Per-sample areas (samples,) for the attribution order and (samples, orders) for random orders."""
    d = rand_del.mean(axis=1) - attr_del
    i = attr_ins - rand_ins.mean(axis=1)
    return Comparison(deletion=float(attr_del.mean()), insertion=float(attr_ins.mean()),
                      random_deletion=float(rand_del.mean()), random_insertion=float(rand_ins.mean()),
                      deletion_gain=float(np.median(d)), insertion_gain=float(np.median(i)),
                      p_deletion=_greater(d), p_insertion=_greater(i), samples=len(d))
