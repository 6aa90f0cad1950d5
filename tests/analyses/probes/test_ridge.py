"""The closed-form ridge probe against brute force: its leave-one-out predictions equal refitting without
each sample, its fit equals scikit-learn's Ridge at the chosen penalty, and the grid's ends are the
least-squares and class-mean limits. The online code (MDL) is the uniform code where there is nothing to
learn and far shorter where the classes separate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from auditor.analyses.probes.mdl import online_code_length
from auditor.analyses.probes.ridge import cross_validate, encode_targets, fit_ridge, spectrum, standardize, stratified_folds


def _problem(n: int, d: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = rng.normal(size=(n, d))
    x[:, 0] += 1.5 * labels
    return x, labels


@pytest.mark.parametrize(("n", "d", "classes"), [(40, 6, 2), (30, 50, 3)])  # more samples than features, and fewer
def test_leave_one_out_scores_equal_refitting_without_each_sample(n: int, d: int, classes: int) -> None:
    x, labels = _problem(n, d, classes)
    z, _ = standardize(x, x[:1])
    fit = fit_ridge(spectrum(x, x[:1]), labels[:, None], classes)
    alpha = float(fit.alphas[0])
    targets = encode_targets(labels[:, None], classes)[:, :, 0]
    for i in (0, 7, n - 1):
        keep = np.arange(n) != i
        # the standardization is the full training set's (as in the closed form); the intercept is refitted
        model = Ridge(alpha=alpha).fit(z[keep], targets[keep])
        assert model.predict(z[i:i + 1])[0] == pytest.approx(fit.loo_scores[i, :, 0], abs=1e-6)


def test_the_fit_equals_sklearn_ridge_at_the_chosen_penalty() -> None:
    x, labels = _problem(60, 10, 2)
    train, test = x[:45], x[45:]
    fit = fit_ridge(spectrum(train, test), labels[:45, None], 2)
    z_train, z_test = standardize(train, test)
    model = Ridge(alpha=float(fit.alphas[0])).fit(z_train, encode_targets(labels[:45, None], 2)[:, 0, 0])
    assert model.predict(z_test) == pytest.approx(fit.test_scores[:, 0, 0], abs=1e-8)


def test_the_grid_runs_from_no_shrinkage_to_total_shrinkage() -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(80) % 2
    x = rng.normal(size=(80, 5))
    spec = spectrum(x, x)
    grid = spec.grid()
    assert grid[0] == pytest.approx(1e3 * spec.lam.max()) and grid[-1] == pytest.approx(1e-3 * spec.lam.min())
    x[:, 0] = labels * 2.0 - 1.0  # the labels are exactly linear in x: no shrinkage wins, at the grid's end
    fit = fit_ridge(spectrum(x, x), labels[:, None], 2)
    assert fit.at_low_end[0]


def test_permuted_label_vectors_are_probed_on_the_same_folds_as_alone() -> None:
    x, labels = _problem(60, 8, 3)
    folds = stratified_folds(labels, folds=5, seed=0, order=np.arange(60))
    perms = np.stack([np.random.default_rng(s).permutation(60) for s in range(4)])
    together = cross_validate(x, labels, 3, folds, permutations=perms)
    for p, accuracy in zip(perms, together.permuted, strict=True):
        assert cross_validate(x, labels[p], 3, folds).accuracy == pytest.approx(accuracy)
    assert together.accuracy > 0.6 > together.permuted.max()


def test_the_online_code_is_the_uniform_code_on_noise_and_much_shorter_on_separable_classes() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(256) % 4
    order = rng.permutation(256)
    noise = online_code_length(rng.normal(size=(256, 8)), labels, 4, order=order)
    assert noise.compression == pytest.approx(1.0, abs=0.08)
    assert noise.bits_per_sample == pytest.approx(math.log2(4), abs=0.15)
    separable = np.eye(4)[labels] * 3 + 0.1 * rng.normal(size=(256, 4))
    clean = online_code_length(separable, labels, 4, order=order)
    assert clean.compression > 4 and clean.bits < noise.bits
