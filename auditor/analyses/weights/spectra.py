"""The spectrum of every weight matrix: which matrices a module has, their singular values, the power-law
fit of the tail, spikes above the Marchenko–Pastur edge and correlation traps."""


from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from auditor.analyses.weights.fit import TailFit, fit_power_law, mp_spikes, rank, shuffled, singular_values

NON_FINITE = "non-finite weights"
MIN_SPIKE_SIDE = 8
"""Matrices with a smaller side than this get no spike count (the Tracy–Widom law needs some size)."""




class WeightsParams(BaseModel):
    """`[analyses.weights]`: which matrices, and the thresholds of the findings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conv_matrices: Literal["kernel_positions", "unfolded"] = "kernel_positions"
    """A Conv layer as its k×k matrices out × in, one per kernel position, their eigenvalues pooled
    (WeightWatcher's convention, on which the [2, 6] band was measured), or as one out × in·k·k matrix
    (the map it applies to each patch)."""
    under_trained_alpha: float = Field(6.0, gt=1.0)
    """α above this: `weights.under_trained` (Martin & Mahoney 2021; WeightWatcher's threshold)."""
    over_trained_alpha: float = Field(2.0, gt=1.0)
    """α below this: `weights.over_trained`."""
    min_eigenvalues: int = Field(20, ge=3)
    """Spectra with fewer nonzero eigenvalues are not fitted (where WeightWatcher switches to a small-sample
    heuristic); the layer's row says so instead of showing an α."""
    rank_collapse_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    """`weights.rank_collapse` when the numerical rank falls short of the full rank by more than this share."""
    correlation_traps: bool = True
    """Also compute the spectrum of every matrix with its entries shuffled (doubles the SVD work)."""
    max_entries: int = Field(1 << 26, ge=1)
    """Skip weight tensors with more entries than this (their SVD would dominate the audit); the report lists them."""
    figure_layers: int = Field(6, ge=0)
    """ESD panels drawn: the layers the findings name, at most this many."""

    @model_validator(mode="after")
    def _band(self) -> WeightsParams:
        if self.over_trained_alpha >= self.under_trained_alpha:
            raise ValueError(f"over_trained_alpha ({self.over_trained_alpha:g}) must be below under_trained_alpha "
                             f"({self.under_trained_alpha:g})")
        return self


@dataclass(frozen=True, eq=False)
class LayerSpectrum:
    """What the spectrum of one layer's weight matrices says."""

    name: str
    type: str
    shape: tuple[int, ...]
    n: int
    m: int
    matrices: int
    evals: np.ndarray
    """Nonzero eigenvalues of WᵀW, pooled over the layer's matrices, ascending."""
    fit: TailFit
    random_like: bool
    """At least `min_eigenvalues` eigenvalues and none above the random-matrix edge: the spectrum is that of
    noise, and no power law is fitted."""
    lambda_max: float
    stable_rank: float
    rank: int
    full_rank: int
    zero_rows: int
    spikes: int | None
    edge: float | None
    """The spike threshold (the median over the layer's matrices)."""
    traps: int | None
    trap_lambda: float | None
    trap_edge: float | None
    largest: tuple[float, tuple[int, ...], float]
    """The largest weight in magnitude: its value, its index and how many standard deviations out it lies."""

    @property
    def alpha_weighted(self) -> float | None:
        return None if self.fit.alpha is None else self.fit.alpha * math.log10(self.lambda_max)


def weight_matrices(module: nn.Module, *, conv: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(the weight tensor, its (B, N, M) stack of matrices with N ≥ M), or None when `module` has no weight
    matrix of its own. nn.MultiheadAttention's packed q/k/v projection is one matrix, as stored."""
    weight = getattr(module, "in_proj_weight", None) if isinstance(module, nn.MultiheadAttention) \
        else getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2 or not weight.is_floating_point() or weight.is_meta \
            or weight.numel() == 0:
        return None
    w = weight.detach()  # `weight` itself is returned: its identity tells tied weights apart
    if w.dim() == 2:
        stack = w.unsqueeze(0)
    elif conv == "unfolded":
        stack = w.reshape(w.shape[0], -1).unsqueeze(0)
    else:  # (out, in, *kernel) -> one out × in matrix per kernel position
        stack = w.flatten(2).permute(2, 0, 1)
    return weight, (stack.mT if stack.shape[-2] < stack.shape[-1] else stack)


def layer_spectra(modules: Iterable[tuple[str, nn.Module]], p: WeightsParams, *, seed: int
                  ) -> tuple[list[LayerSpectrum], dict[str, str]]:
    """The spectrum of every module's weight matrices, in order, and the modules left out with the reason
    (a weight shared with an earlier module, NaN or Inf in it, or too large). `seed` orders the shuffled
    copies."""
    found: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    skipped: dict[str, str] = {}
    seen: dict[int, str] = {}
    for name, module in modules:
        matrices = weight_matrices(module, conv=p.conv_matrices)
        if matrices is None:
            continue
        weight, stack = matrices
        if id(weight) in seen:
            skipped[name] = f"shares its weight with {seen[id(weight)] or '(model)'}"
        elif not bool(torch.isfinite(weight.detach()).all()):
            nan, inf = int(weight.detach().isnan().sum()), int(weight.detach().isinf().sum())
            skipped[name] = f"{NON_FINITE}: {nan:,} NaN and {inf:,} Inf of its {weight.numel():,}"
        elif weight.numel() > p.max_entries:
            skipped[name] = f"{weight.numel():,} weights, more than max_entries = {p.max_entries:,}"
        else:
            seen[id(weight)] = name
            found.append((name, module, weight.detach(), stack))
    values = singular_values([stack for *_, stack in found])
    mixed = None
    if p.correlation_traps:
        generator = torch.Generator().manual_seed(seed)
        mixed = singular_values([shuffled(stack, generator=generator) for *_, stack in found], refine=False)
    layers = [_spectrum(name, module, weight, stack, sv, mixed[i] if mixed is not None else None, p)
              for i, ((name, module, weight, stack), sv) in enumerate(zip(found, values, strict=True))]
    return layers, skipped


def _spectrum(name: str, module: nn.Module, weight: torch.Tensor, stack: torch.Tensor, sv: torch.Tensor,
              mixed: torch.Tensor | None, p: WeightsParams) -> LayerSpectrum:
    """One layer's numbers from the singular values of its matrices (and of their shuffled copies)."""
    matrices, n, m = (int(d) for d in stack.shape)
    ranks = rank(sv, n, m)
    evals = sv.square()
    nonzero = torch.cat([e[-int(r):] if int(r) else e[:0] for e, r in zip(evals, ranks, strict=True)])
    pooled = np.sort(nonzero.numpy())
    lambda_max = float(evals[:, -1].max())
    spikes = mp_spikes(evals, n, m) if m >= MIN_SPIKE_SIDE else None
    traps = mp_spikes(mixed.square(), n, m) if mixed is not None and m >= MIN_SPIKE_SIDE else None
    fit = fit_power_law(pooled, min_evals=p.min_eigenvalues)
    # Judged only where a fit would be made: a small head's few directions may all be signal, none a spike.
    random_like = spikes is not None and spikes.total == 0 and fit.failed is None
    if random_like:
        # Clauset's fit puts x_min near the bulk's edge of a noise matrix and returns some α (p5 ≈ 4 for a
        # Gaussian 600×300): the power law is the wrong model there, so the fit is rejected, not shown.
        fit = TailFit(failed="rejected: no eigenvalue above the random-matrix edge (the spectrum of noise)")
    flat = weight.reshape(-1)
    at = int(flat.abs().argmax())
    std = float(flat.double().std()) if flat.numel() > 1 else 0.0
    value = float(flat[at])
    index = tuple(int(i) for i in np.unravel_index(at, tuple(weight.shape)))
    return LayerSpectrum(
        name=name, type=type(module).__name__, shape=tuple(int(d) for d in weight.shape), n=n, m=m,
        matrices=matrices, evals=pooled, fit=fit, random_like=random_like, lambda_max=lambda_max,
        stable_rank=float(evals.sum()) / lambda_max if lambda_max > 0 else 0.0,
        rank=int(ranks.sum()), full_rank=matrices * m,
        zero_rows=int(weight.reshape(weight.shape[0], -1).eq(0).all(dim=1).sum()),
        spikes=spikes.total if spikes is not None else None,
        edge=float(spikes.edges.median()) if spikes is not None else None,
        traps=traps.total if traps is not None else None,
        trap_lambda=float(mixed.square().max()) if traps is not None and mixed is not None else None,
        trap_edge=float(traps.edges.median()) if traps is not None else None,
        largest=(value, index, abs(value) / std if std > 0 else math.inf),
    )


