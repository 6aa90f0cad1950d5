"""Linear probes in closed form: ridge classification on standardized features, its regularization chosen
by exact leave-one-out, scored by stratified k-fold accuracy.

Why ridge and not logistic regression: a probe per block and property, for every fold, for every label
permutation and again on a re-initialized network, is thousands of fits. Nested cross-validation with an
iterative logistic solver takes ~65 s on the MiniLM demo; here each training fold is decomposed once
(an eigendecomposition of the smaller Gram matrix), and then every ridge penalty and every label vector
(the true labels and all permuted ones) costs a few matrix products, with the leave-one-out predictions
read off the hat matrix (Allen, 1974; Golub, Heath & Wahba, 1979; what scikit-learn's `RidgeClassifierCV`
does for one label vector). Targets are ±1 (one column for two classes, one-vs-rest columns for more),
with an unpenalized intercept; the predicted class is the sign, or the largest column.

The penalty grid runs from no shrinkage of any direction (1e-3 × the smallest eigenvalue: ordinary least
squares, or the minimum-norm interpolator) to total shrinkage (1e3 × the largest: the class-mean
difference direction, which is the limit of the ridge classifier as the penalty grows). A choice at
either end is therefore that limit itself, never a grid cut short; the probe records how many folds
chose an end. The penalty minimises the leave-one-out squared error of the ±1 targets (as scikit-learn's
`RidgeClassifierCV` does); choosing by leave-one-out accuracy instead made the choice jump between folds
and scored no better on MiniLM.

Folds are stratified and shuffled with the seed, in an order that depends on the samples' content, not
on their order in the file: a file sorted by label and the same file shuffled give the same folds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

_EIGEN_FLOOR = 1e-9
"""Eigenvalues below this share of the largest are dropped (the centred data's null space and rounding)."""


@dataclass(frozen=True)
class Spectrum:
    """One training set's standardized features in the eigenbasis of their Gram matrix.

    `z_train` = X_train V and `z_test` = X_test V, where X_trainᵀ X_train = V diag(lam) Vᵀ: the ridge fit for
    any penalty and any targets is a product with these.
    """

    z_train: np.ndarray
    z_test: np.ndarray
    lam: np.ndarray

    def grid(self, *, per_decade: int = 2) -> np.ndarray:
        """Penalties from no shrinkage of any direction to total shrinkage of every direction, largest first."""
        low, high = float(self.lam.min()) * 1e-3, float(self.lam.max()) * 1e3
        points = int(np.clip(math.ceil(per_decade * math.log10(high / low)) + 1, 9, 61))
        return np.geomspace(high, low, points)


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres and scales both by the training set's mean and standard deviation (constant features stay 0)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std <= 1e-12 * max(float(std.max(initial=0.0)), 1e-300)] = 1.0
    return (train - mean) / std, (test - mean) / std


def spectrum(train: np.ndarray, test: np.ndarray) -> Spectrum:
    """Standardizes (training statistics) and decomposes the smaller of the two Gram matrices."""
    x, xt = standardize(np.asarray(train, dtype=np.float64), np.asarray(test, dtype=np.float64))
    n, d = x.shape
    if not np.abs(x).max(initial=0.0) > 0:  # every feature constant: the intercept alone
        return Spectrum(z_train=np.zeros((n, 1)), z_test=np.zeros((len(xt), 1)), lam=np.ones(1))
    if d <= n:
        lam, v = np.linalg.eigh(x.T @ x)
        keep = lam > _EIGEN_FLOOR * max(float(lam.max(initial=0.0)), 1e-300)
        v, lam = v[:, keep], lam[keep]
        return Spectrum(z_train=x @ v, z_test=xt @ v, lam=lam)
    lam, u = np.linalg.eigh(x @ x.T)
    keep = lam > _EIGEN_FLOOR * max(float(lam.max(initial=0.0)), 1e-300)
    u, lam = u[:, keep], lam[keep]
    root = np.sqrt(lam)
    return Spectrum(z_train=u * root, z_test=(xt @ x.T) @ u / root, lam=lam)


def encode_targets(labels: np.ndarray, classes: int) -> np.ndarray:
    """(n, L) class indices -> (n, m, L) ±1 targets: m = 1 for two classes, one column per class otherwise."""
    if classes == 2:
        return np.asarray((2.0 * (labels == 1) - 1.0)[:, None, :])
    return np.asarray(2.0 * (labels[:, None, :] == np.arange(classes)[None, :, None]) - 1.0)


def decide(scores: np.ndarray) -> np.ndarray:
    """(n, m, L) scores -> (n, L) predicted classes."""
    if scores.shape[1] == 1:
        return (scores[:, 0, :] > 0).astype(np.int64)
    return np.asarray(scores.argmax(axis=1))


@dataclass(frozen=True)
class RidgeFit:
    """Ridge fits of L label vectors on one training set, each at its own leave-one-out choice of penalty."""

    alphas: np.ndarray
    """(L,) the chosen penalty of each label vector."""
    at_low_end: np.ndarray
    """(L,) bool: the choice was the grid's no-shrinkage end."""
    test_scores: np.ndarray
    """(n_test, m, L)"""
    loo_scores: np.ndarray
    """(n_train, m, L) leave-one-out scores at the chosen penalty."""


def fit_ridge(spec: Spectrum, labels: np.ndarray, classes: int) -> RidgeFit:
    """Fits every column of `labels` ((n_train, L) class indices) with its penalty chosen by leave-one-out.

    Args:
        spec: the training set's spectrum (from `spectrum`).
        labels: (n_train, L) class indices in 0..classes-1, one column per label vector.
        classes: the number of classes.
    """
    n = spec.z_train.shape[0]
    targets = encode_targets(labels, classes)  # (n, m, L)
    m, count = targets.shape[1], targets.shape[2]
    mean = targets.mean(axis=0, keepdims=True)
    flat = (targets - mean).reshape(n, m * count)
    b = spec.z_train.T @ flat  # (r, m L)
    grid = spec.grid()
    f = 1.0 / (spec.lam[None, :] + grid[:, None])  # (A, r)
    z2 = spec.z_train ** 2
    # Penalties in chunks, all label vectors at once: leave-one-out residual = residual / (1 - leverage).
    mse = np.empty((len(grid), count))
    step = max(1, int(2e7 // max(n * m * count, 1)))
    for lo in range(0, len(grid), step):
        part = f[lo:lo + step]
        fits = np.matmul(spec.z_train, b[None, :, :] * part[:, :, None])  # (a, n, m L)
        leverage = np.minimum(z2 @ part.T + 1.0 / n, 1.0 - 1e-12)  # (n, a)
        residual = (flat[None] - fits) / (1.0 - leverage.T)[:, :, None]
        mse[lo:lo + step] = (residual ** 2).reshape(len(part), n, m, count).sum(axis=2).mean(axis=1)
    best = mse.argmin(axis=0)
    alphas = grid[best]
    chosen = f[best]  # (L, r)
    coef = (b.reshape(-1, m, count) * chosen.T[:, None, :]).reshape(-1, m * count)  # (r, m L)
    test_scores = (spec.z_test @ coef).reshape(-1, m, count) + mean
    fit = (spec.z_train @ coef).reshape(n, m, count) + mean
    leverage = np.minimum(z2 @ chosen.T + 1.0 / n, 1.0 - 1e-12)  # (n, L)
    loo = targets - (targets - fit) / (1.0 - leverage)[:, None, :]
    return RidgeFit(alphas=alphas, at_low_end=best == len(grid) - 1, test_scores=test_scores, loo_scores=loo)


def canonical_order(keys: np.ndarray | None, n: int) -> np.ndarray:
    """Sample indices sorted by a content key (a hash of each sample), so that results do not depend on the
    order of the file; the file's order when no keys are known."""
    if keys is None:
        return np.arange(n)
    return np.argsort(keys, kind="stable")


def stratified_folds(labels: np.ndarray, *, folds: int, seed: int, order: np.ndarray) -> list[np.ndarray]:
    """Test indices of `folds` stratified folds, shuffled with `seed`, assigned in `order`."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    ordered = labels[order]
    return [np.sort(order[test]) for _, test in splitter.split(np.zeros((len(ordered), 1)), ordered)]


def within_fold_permutations(folds: list[np.ndarray], order: np.ndarray, count: int,
                             rng: np.random.Generator) -> np.ndarray:
    """(count, n) label permutations that move labels only within each test fold: sample i takes the label
    of sample perm[i], from the same fold.

    A permutation over all samples would break the folds' stratification (a training fold with more of one
    class biases the probe towards it, and the test fold then holds fewer of that class), so permuted
    labels would score below the true ones even when nothing is decodable, and the threshold they set
    would be too low: on random labels, 5 of 20 seeds "found" a signal. Within folds, true and permuted
    labels have the same fold structure and are exchangeable under the null. The shuffles run over each
    fold's members in `order` (the content order), so the file's order changes nothing.
    """
    n = sum(len(f) for f in folds)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    members = [fold[np.argsort(rank[fold], kind="stable")] for fold in folds]
    permutations = np.empty((count, n), dtype=np.int64)
    for row in permutations:
        for fold in members:
            row[fold] = fold[rng.permutation(len(fold))]
    return permutations


def usable_folds(labels: np.ndarray, wanted: int) -> int:
    """Folds the rarest class allows (each fold needs one of each class): 0 when fewer than two per class."""
    counts = np.bincount(labels)
    rarest = int(counts[counts > 0].min()) if counts.any() else 0
    return min(wanted, rarest) if rarest >= 2 else 0


@dataclass(frozen=True)
class CrossValidated:
    """Stratified k-fold accuracy of the true labels and of each permuted label vector."""

    correct: int
    samples: int
    permuted: np.ndarray
    """(P,) accuracy of each label permutation, on the same folds."""
    alphas: list[float]
    """Chosen penalty of the true labels, per fold."""
    low_end: int
    """Folds (true labels) whose choice was the no-shrinkage end of the grid."""
    high_end: int
    """Folds (true labels) whose choice was the total-shrinkage end (the class-mean direction)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval of the accuracy (95% by default)."""
        return wilson(self.correct, self.samples, z=z)


def cross_validate(x: np.ndarray, labels: np.ndarray, classes: int, folds: list[np.ndarray], *,
                   permutations: np.ndarray | None = None) -> CrossValidated:
    """k-fold accuracy of a ridge probe on `x` for `labels`, and for `labels[perm]` for each row of
    `permutations` ((P, n) index arrays) on the same folds: one decomposition per fold serves them all."""
    n = len(labels)
    columns = [labels] + ([labels[p] for p in permutations] if permutations is not None else [])
    all_labels = np.stack(columns, axis=1)  # (n, L)
    correct = np.zeros(all_labels.shape[1], dtype=np.int64)
    alphas: list[float] = []
    low = high = 0
    for test in folds:
        train = np.setdiff1d(np.arange(n), test, assume_unique=True)
        spec = spectrum(x[train], x[test])
        fit = fit_ridge(spec, all_labels[train], classes)
        correct += (decide(fit.test_scores) == all_labels[test]).sum(axis=0)
        alphas.append(float(fit.alphas[0]))
        grid = spec.grid()
        low += int(fit.at_low_end[0])
        high += int(np.isclose(fit.alphas[0], grid[0]))
    return CrossValidated(correct=int(correct[0]), samples=n, permuted=correct[1:] / n, alphas=alphas,
                          low_end=low, high_end=high)


def wilson(successes: int, trials: int, *, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials <= 0:
        return (math.nan, math.nan)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


__all__ = ["CrossValidated", "RidgeFit", "Spectrum", "canonical_order", "cross_validate", "decide",
           "encode_targets", "fit_ridge", "spectrum", "standardize", "stratified_folds", "usable_folds", "wilson"]
