"""The spectral arithmetic of the weights analysis: singular values, the power-law tail fit, the
Marchenko–Pastur edge with its Tracy–Widom margin, and the shuffled-entries control. Pure torch/numpy.

Conventions are WeightWatcher's (Martin & Mahoney): the eigenvalues of WᵀW (squared singular values of W,
not divided by N) of each N × M matrix (N ≥ M), pooled over the matrices of one layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

EPS32 = float(torch.finfo(torch.float32).eps)
TW1_QUANTILE = 3.27
"""The 99.9th percentile of the Tracy–Widom law of order 1 (Bejan 2005's tables; 3.24–3.28 in our own
simulation of 50,000 Gaussian 60×30, 100×100 and 200×50 matrices): the largest eigenvalue of a pure-noise
matrix lies beyond the bulk edge by more than this many TW scale units once in a thousand matrices."""
NOISE_SE = 1.0
"""Standard errors of the noise-level estimate added to the edge (the estimate's own uncertainty). With it,
4,000 simulated noise matrices of each of 7 shapes from 16×16 to 300×100, Gaussian and uniform, had a
spike in at most one (2.5·10⁻⁴)."""
CHUNK = 1 << 16
"""Elements per block of the KS-distance matrix (512 KiB in float64: it stays in the cache)."""
BATCH_ELEMENTS = 1 << 26
"""Matrix entries per batched SVD call (256 MiB in float32)."""
FP32_ERROR = 64 * EPS32
"""A bound on float32 LAPACK's error in a singular value, in units of σ_max (the backward-stable bound is a
few ε₃₂·σ_max): a singular value closer than this to the rank tolerance is computed again in float64."""


@dataclass(frozen=True)
class TailFit:
    """A power law p(λ) ∝ λ^-α fitted to the eigenvalues λ ≥ x_min, or why no fit was made."""

    alpha: float | None = None
    xmin: float | None = None
    ks: float | None = None
    """Kolmogorov–Smirnov distance between the tail and the fitted law (the fit's quality; smaller is better)."""
    n_tail: int = 0
    failed: str | None = None

    @property
    def se(self) -> float | None:
        """Standard error of the MLE, (α - 1) / √n_tail (Clauset, Shalizi & Newman 2009, eq. 3.2)."""
        return None if self.alpha is None or not self.n_tail else (self.alpha - 1) / math.sqrt(self.n_tail)


def fit_power_law(evals: np.ndarray, *, min_evals: int) -> TailFit:
    """The continuous power-law MLE α = 1 + n / Σ ln(λ / x_min), with x_min the eigenvalue that minimizes
    the KS distance of the tail above it (Clauset, Shalizi & Newman 2009), every candidate at once.

    Candidates are every eigenvalue but the largest; the empirical CDF of a tail of n is 0, 1/n, ...,
    (n-1)/n at its sorted points, and ties go to the smallest x_min: the `powerlaw` package's rule (2.0)
    and WeightWatcher's own implementation of it (0.7.7), which this reproduces to float rounding.
    """
    x = np.sort(np.asarray(evals, dtype=np.float64))
    x = x[x > 0]
    n = len(x)
    if n < min_evals:
        return TailFit(failed=f"{n} nonzero eigenvalue{'s' * (n != 1)}; a tail fit needs at least {min_evals}")
    logx = np.log(x)
    if logx[-1] - logx[0] < 1e-9:
        return TailFit(failed="all eigenvalues are equal (an orthogonal matrix, up to scale): no tail to fit")
    suffix = np.cumsum(logx[::-1])[::-1]
    starts = np.arange(n - 1)
    sizes = (n - starts).astype(np.float64)
    spread = suffix[:-1] - sizes * logx[:-1]  # Σ ln(λ / x_min) over the tail
    with np.errstate(divide="ignore"):
        alphas = np.where(spread > 0, 1.0 + sizes / np.where(spread > 0, spread, 1.0), np.inf)
    distances = np.ones(n - 1)
    rows = max(1, CHUNK // n)
    columns = np.arange(n, dtype=np.float64)
    for lo in range(0, n - 1, rows):
        i = starts[lo:lo + rows]
        a = alphas[lo:lo + rows]
        ok = np.isfinite(a) & (a > 1)
        # Below its x_min a row's gap is clipped to 0 and its rank to 0: both CDFs are 0 there, so only the
        # tail enters the maximum.
        gap = np.maximum(logx[None, :] - logx[i][:, None], 0.0)
        gap *= (1.0 - np.where(ok, a, 2.0))[:, None]
        fitted = np.expm1(gap)
        fitted += np.maximum(columns[None, :] - i[:, None], 0.0) / sizes[lo:lo + rows][:, None]
        distances[lo:lo + rows] = np.where(ok, np.abs(fitted).max(axis=1), 1.0)
    best = int(np.argmin(distances))
    if not math.isfinite(alphas[best]) or alphas[best] <= 1:
        return TailFit(failed="no x_min gives a power law with α > 1")
    return TailFit(alpha=float(alphas[best]), xmin=float(x[best]), ks=float(distances[best]), n_tail=n - best)


def singular_values(matrices: Sequence[torch.Tensor], *, refine: bool = True) -> list[torch.Tensor]:
    """Singular values (ascending, float64 on the CPU) of each (B, N, M) stack, batched by shape.

    LAPACK runs in float32, the precision the weights are stored in, in one call per shape for all layers
    alike: its error, a few ε₃₂·σ_max, is far below what the fit and the spikes read. Where float64 matters,
    the numerical rank (`rank`), a stack with a singular value within `FP32_ERROR` of the rank tolerance,
    where float32's own error could flip the decision, is recomputed in float64 (`refine`).
    """
    out: list[torch.Tensor | None] = [None] * len(matrices)
    groups: dict[tuple[int, int], list[int]] = {}
    for index, stack in enumerate(matrices):
        groups.setdefault((int(stack.shape[-2]), int(stack.shape[-1])), []).append(index)
    for (n, m), members in groups.items():
        per_call = max(1, BATCH_ELEMENTS // (n * m))
        flat = [(index, b) for index in members for b in range(matrices[index].shape[0])]
        values: list[torch.Tensor] = []
        for lo in range(0, len(flat), per_call):
            chunk = torch.stack([matrices[i][b] for i, b in flat[lo:lo + per_call]]).to(torch.float32)
            values.append(torch.linalg.svdvals(chunk).to("cpu", torch.float64))
        every = torch.cat(values)
        at = 0
        for index in members:
            size = matrices[index].shape[0]
            found = every[at:at + size].flip(-1)
            at += size
            if refine and bool(((found - rank_tolerance(found, n, m)).abs() < FP32_ERROR * found[:, -1:]).any()):
                found = torch.linalg.svdvals(matrices[index].to(torch.float64)).cpu().flip(-1)
            out[index] = found
    return [values for values in out if values is not None]


def rank_tolerance(sv: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """(B, 1) max(N, M) · ε₃₂ · σ_max: NumPy's matrix_rank rule at the precision the weights are stored in."""
    return max(n, m) * EPS32 * sv[:, -1:]


def rank(sv: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Numerical rank of each matrix: its singular values above `rank_tolerance`."""
    return (sv > rank_tolerance(sv, n, m)).sum(dim=1)


@dataclass(frozen=True)
class Spikes:
    """Eigenvalues above the Marchenko–Pastur bulk edge of each matrix, beyond its Tracy–Widom margin."""

    counts: torch.Tensor
    """(B,) spikes per matrix."""
    edges: torch.Tensor
    """(B,) the threshold each matrix's eigenvalues were compared with."""

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def mp_spikes(evals: torch.Tensor, n: int, m: int, *, max_rounds: int = 50) -> Spikes:
    """Counts, per N × M matrix (rows of `evals`, eigenvalues of WᵀW), the eigenvalues a noise matrix of
    the same size and noise level would exceed once in a thousand times.

    For i.i.d. entries of variance σ² the largest eigenvalue of WᵀW is σ²(μ + s·TW₁), with Johnstone's (2001)
    centring μ = (√(N-½) + √(M-½))² and scale s = (√(N-½) + √(M-½))(1/√(N-½) + 1/√(M-½))^⅓. σ² is the
    energy left in the bulk per remaining degree of freedom, re-estimated as spikes are set aside (k of
    them take k(N + M - k) of the NM degrees of freedom) until the count no longer changes; the edge adds
    the estimate's own uncertainty (`NOISE_SE` standard error of a variance from (N-k)(M-k) values).
    """
    a, b = math.sqrt(n - 0.5), math.sqrt(m - 0.5)
    mu, s = (a + b) ** 2, (a + b) * (1 / a + 1 / b) ** (1 / 3)
    evals = evals.to(torch.float64)
    counts = torch.zeros(evals.shape[0], dtype=torch.long)
    edges = torch.zeros(evals.shape[0], dtype=torch.float64)
    for _ in range(max_rounds):
        kept = (n - counts) * (m - counts)
        bulk = torch.where(evals <= edges[:, None], evals, 0.0).sum(dim=1) if bool(edges.any()) \
            else evals.sum(dim=1)
        sigma2 = bulk / kept.clamp_min(1)
        edges = sigma2 * (mu * (1 + NOISE_SE * torch.sqrt(2.0 / kept.clamp_min(1))) + s * TW1_QUANTILE)
        new = (evals > edges[:, None]).sum(dim=1).clamp_max(m - 1)
        if torch.equal(new, counts):
            break
        counts = new
    return Spikes(counts=counts, edges=edges)


def shuffled(stack: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Each matrix of a (B, N, M) stack with its entries in a random order (its own permutation): the same
    values without their arrangement, so what it has in common with the original is entries, not structure."""
    flat = stack.reshape(stack.shape[0], -1)
    index = torch.int32 if flat.shape[1] < 2**31 else torch.int64  # int32: half the time at 10⁷ entries
    return torch.stack([row.index_select(0, torch.randperm(row.numel(), generator=generator, dtype=index)
                                         .to(row.device)) for row in flat]).reshape(stack.shape)


__all__ = ["Spikes", "TailFit", "fit_power_law", "mp_spikes", "rank", "rank_tolerance", "shuffled", "singular_values"]
