"""The tests that tell a real change from noise between two audits.

- Paired (both audits saw the same samples): McNemar's exact test on the samples whose correctness
  changed (McNemar, 1947, "Note on the sampling error of the difference between correlated proportions"):
  under "no change", a sample that flips is as likely to flip either way, so the count of
  right-to-wrong flips among all flips is Binomial(flips, 1/2). Two-sided.
- Unpaired (different samples): Fisher's exact test on the two 2x2 tables of right and wrong counts.
- Across classes: Holm's step-down correction (Holm, 1979), so ten classes are not ten chances of noise.
- Module rankings: Spearman's rank correlation over the modules both audits have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest, fisher_exact, spearmanr

from auditor.schema.diff import ChangeTest, format_p


def mcnemar(old_correct: np.ndarray, new_correct: np.ndarray) -> ChangeTest:
    """McNemar's exact two-sided test on paired per-sample correctness."""
    old_correct, new_correct = np.asarray(old_correct, bool), np.asarray(new_correct, bool)
    worse = int((old_correct & ~new_correct).sum())
    better = int((~old_correct & new_correct).sum())
    p = float(binomtest(worse, worse + better, 0.5).pvalue) if worse + better else 1.0
    return ChangeTest("McNemar", min(p, 1.0), worse=worse, better=better)


def fisher(right_old: int, n_old: int, right_new: int, n_new: int) -> ChangeTest:
    """Fisher's exact two-sided test on right/wrong counts of two unpaired samples."""
    if n_old <= 0 or n_new <= 0:
        return ChangeTest("Fisher", 1.0)
    table = [[right_old, n_old - right_old], [right_new, n_new - right_new]]
    return ChangeTest("Fisher", float(fisher_exact(table)[1]))  # [1]: scipy < 1.11 returns a tuple


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order as given), each at most 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def spearman(old: Sequence[float], new: Sequence[float]) -> float | None:
    """Spearman's rho, or None when it is undefined (fewer than 3 values, or one side constant)."""
    if len(old) < 3 or len(old) != len(new):
        return None
    a, b = np.asarray(old, float), np.asarray(new, float)
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    rho = float(spearmanr(a, b)[0])
    return None if math.isnan(rho) else rho


__all__ = ["ChangeTest", "fisher", "format_p", "holm", "mcnemar", "spearman"]
