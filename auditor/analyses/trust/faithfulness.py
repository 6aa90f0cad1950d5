"""Deletion and insertion curves (Petsiuk et al., 2018): does the attribution order predict what happens
when the input changes? And can the test tell, on this model?

Deletion removes a sample's positions, most-attributed first, and follows the target's probability down;
insertion starts from the baseline (or a blur) and puts the positions back in the same order. Positions
are square patches for images (`patch_side`; a patch's score is the mean of the map over its pixels),
features for arrays, content tokens for text. What a removed position becomes (ROAD's noisy linear
imputation, the baseline, a blur, the pad token) is the analysis's choice. Each sample also runs
`random_orders` random orders. The areas under the curves (fraction removed on x, probability on y) are
compared per sample with the mean of the random orders, each by a one-sided Wilcoxon signed-rank test
over samples. Deletion decides (Petsiuk et al.'s primary metric; insertion starts from the baseline, far
from the data, so it is reported beside it but does not decide).

Pixel deletion can remove information and leave the data at once (Hooker et al., 2019, ROAR; Rong et
al., 2022, ROAD): when random orders already collapse the prediction, no order can delete faster, and a
method that fails the test is not shown unfaithful. So the test is first run on two references on the
model itself (`Power`): occlusion of the same positions, faithful by construction (each position's score
is the drop of the target's probability when it alone is removed, the way deletion removes it), and a
noise explainer (random maps). The test has power when the first beats random orders and the second
does not, and random orders do not collapse the prediction at once.

Cost per sample: at most 2 × (steps + 1) × (random_orders + methods + 2) forwards, batched, and one per
position for occlusion; inputs that repeat (the start and end of every order, fractions that round to the
same count) run once.
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
    """(rows, positions) bool masks, True = remove -> a batch of model inputs."""
    pool: Callable[[torch.Tensor], torch.Tensor]
    """The sample's map (flattened) -> one score per position (a patch's mean, a token's value)."""
    insert: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None
    """Insertion's `build` (True = not restored yet) where it differs: imputed deletion, but insertion onto the
    baseline, as Petsiuk et al. define it (a fill imputed from a few restored patches smears them over the image)."""

    def order(self, flat_map: torch.Tensor) -> torch.Tensor:
        """The positions, highest score first (ties in position order)."""
        return self.pool(flat_map).argsort(descending=True, stable=True)


def patch_side(height: int, width: int) -> int:
    """The default patch: an eighth of the shorter side, rounded half up, at least 1 (32 × 32 -> 4, 64 patches;
    28 × 28 -> 4, 49 patches; 224 × 224 -> 28)."""
    return max(1, int(min(height, width) / 8 + 0.5))


def patch_ids(height: int, width: int, side: int) -> torch.Tensor:
    """(height × width,) the patch of every pixel, row-major; the last row and column of patches may be
    narrower when `side` does not divide the image."""
    columns = -(-width // side)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((ys // side) * columns + xs // side).flatten()


def patch_means(flat_map: torch.Tensor, ids: torch.Tensor, patches: int) -> torch.Tensor:
    """The mean of a flattened map over each patch."""
    total = torch.zeros(patches, dtype=torch.float64).index_add_(0, ids, flat_map.double())
    count = torch.zeros(patches, dtype=torch.float64).index_add_(0, ids, torch.ones_like(ids, dtype=torch.float64))
    return (total / count).float()


def occlusion_scores(editable: Editable, probability: Callable[[dict[str, torch.Tensor]], torch.Tensor], *,
                     chunk: int) -> torch.Tensor:
    """The reference explainer, faithful by construction: each position's score is how far the target's
    probability falls when that position alone is removed, the way deletion removes it (up to a constant:
    minus the probability after the removal)."""
    eye = torch.eye(editable.positions, dtype=torch.bool)
    values = [probability(editable.build(eye[start:start + chunk])).detach().float().cpu()
              for start in range(0, editable.positions, chunk)]
    return -torch.cat(values)


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
    shape = (len(orders), len(fractions))
    return (_probabilities(editable.build, delete, probability, chunk).reshape(shape),
            _probabilities(editable.insert or editable.build, insert, probability, chunk).reshape(shape))


def _probabilities(build: Callable[[torch.Tensor], dict[str, torch.Tensor]], masks: torch.Tensor,
                   probability: Callable[[dict[str, torch.Tensor]], torch.Tensor], chunk: int) -> np.ndarray:
    # Rows repeat: every order starts and ends at the same input, and with fewer positions than steps
    # neighbouring fractions round to the same count. Each distinct input runs once.
    unique, inverse = torch.unique(masks.to(torch.uint8), dim=0, return_inverse=True)
    values = []
    for start in range(0, unique.shape[0], chunk):
        values.append(probability(build(unique[start:start + chunk].bool())).detach().float().cpu())
    return np.asarray(torch.cat(values)[inverse].numpy())


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


def faster(first: np.ndarray, second: np.ndarray) -> float:
    """One-sided Wilcoxon p-value that the per-sample deletion areas `first` are below `second`."""
    return _greater(second - first)


def compare(attr_del: np.ndarray, attr_ins: np.ndarray, rand_del: np.ndarray, rand_ins: np.ndarray) -> Comparison:
    """Per-sample areas (samples,) for the attribution order and (samples, orders) for random orders."""
    d = rand_del.mean(axis=1) - attr_del
    i = attr_ins - rand_ins.mean(axis=1)
    return Comparison(deletion=float(attr_del.mean()), insertion=float(attr_ins.mean()),
                      random_deletion=float(rand_del.mean()), random_insertion=float(rand_ins.mean()),
                      deletion_gain=float(np.median(d)), insertion_gain=float(np.median(i)),
                      p_deletion=_greater(d), p_insertion=_greater(i), samples=len(d))


def beats_random(c: Comparison, alpha: float) -> bool:
    """The order deletes faster than random orders: one-sided p below `alpha`, and a median gain above 0."""
    return c.p_deletion < alpha and c.deletion_gain > 0


@dataclass(frozen=True)
class Power:
    """Whether the deletion test can tell a faithful explainer from an unfaithful one on this model."""

    occlusion: Comparison
    """The reference faithful by construction against random orders."""
    noise: Comparison
    """The noise explainer (random maps) against random orders."""
    separation_p: float
    """One-sided p-value that occlusion deletes faster than the random maps (paired over samples)."""
    start: float
    """Mean target probability with nothing removed."""
    end: float
    """Mean target probability with every position removed."""
    random_normalized: float
    """The random orders' mean deletion area rescaled to the drop, in [0, 1]: 0 = the probability falls to its end
    value at the first step, 1 = it holds until everything is removed (a straight fall gives 0.5; no drop: 1)."""
    calibrated: bool
    """False when the random maps beat random orders clearly: the test rewards orders that know nothing."""
    reasons: tuple[str, ...]
    """Why the test has no power (empty: it has)."""

    @property
    def conclusive(self) -> bool:
        return not self.reasons


def power(occlusion: Comparison, noise: Comparison, separation_p: float, start: float, end: float, *,
          alpha: float, collapse_area: float, min_drop: float = 0.05, calibration: float = 0.1) -> Power:
    """The test's power from its two references and the random orders' curve (`Comparison.random_deletion`).

    `separation_p`: the one-sided p-value that occlusion deletes faster than the random maps, per sample. Random
    maps beat random orders at `alpha` by chance in one audit of 1/alpha; only when they beat them clearly (p
    below `calibration` × alpha: an order the test rewards whatever the map) is the test called uncalibrated.
    """
    drop = start - end
    normalized = min(1.0, max(0.0, (occlusion.random_deletion - end) / drop)) if drop > 0 else 1.0
    reasons = []
    if drop < min_drop:
        reasons.append(f"removing every position moves the target's probability only from {start:.3f} to {end:.3f}, "
                       "so deleting the evidence cannot be told from deleting anything")
    elif normalized < collapse_area:
        reasons.append(f"random deletion already collapses the prediction: area {occlusion.random_deletion:.3f}, "
                       f"the target's probability falling from {start:.3f} towards {end:.3f} almost at once "
                       f"(normalized area {normalized:.2f} < {collapse_area})")
    if not beats_random(occlusion, alpha):
        reasons.append(f"occlusion of the same positions, faithful by construction, deletes no faster than random "
                       f"orders (area {occlusion.deletion:.3f} against {occlusion.random_deletion:.3f}, "
                       f"p = {occlusion.p_deletion:.3g})")
    elif separation_p >= alpha:
        reasons.append(f"occlusion, faithful by construction, cannot be told from random maps (area "
                       f"{occlusion.deletion:.3f} against {noise.deletion:.3f}, p = {separation_p:.3g})")
    calibrated = noise.p_deletion >= calibration * alpha
    if not calibrated:
        reasons.append(f"random maps (a noise explainer) delete faster than random orders (area {noise.deletion:.3f} "
                       f"against {noise.random_deletion:.3f}, p = {noise.p_deletion:.3g}): the test rewards orders "
                       "that know nothing of the model")
    return Power(occlusion=occlusion, noise=noise, separation_p=separation_p, start=start, end=end,
                 random_normalized=normalized, calibrated=calibrated, reasons=tuple(reasons))
