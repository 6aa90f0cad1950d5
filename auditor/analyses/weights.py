"""Weights: what the trained weights of every layer say about how well it learned, without any data.

Heavy-Tailed Self-Regularization (Martin & Mahoney, "Implicit self-regularization in deep neural networks",
JMLR 22, 2021; "Predicting trends in the quality of state-of-the-art neural networks without access to
training or testing data", Nature Communications 12, 4122, 2021; their `weightwatcher` package): training
correlates a layer's weights, and the empirical spectral density (ESD) of WᵀW grows a power-law tail
p(λ) ∝ λ^-α. Across many trained models α fell mostly in [2, 6]: above 6 the ESD is close to a random
matrix's (under-trained), below 2 very heavy-tailed (over-trained). α compares layers and models of one
family; it is not an accuracy.

Per weight matrix (Linear and attention projections as they are, embeddings, Conv layers as their k×k
kernel positions by default, WeightWatcher's convention, or unfolded to out × in·k·k): α of the tail fitted
by maximum likelihood with x_min chosen by the Kolmogorov–Smirnov distance (Clauset, Shalizi & Newman
2009), α-weighted (α·log₁₀ λ_max), log₁₀ λ_max, the stable rank Σλ/λ_max, the eigenvalues above the
Marchenko–Pastur edge beyond its Tracy–Widom margin (spikes), the same count for the matrix with its
entries shuffled (correlation traps: what survives shuffling is a few large entries, not structure), and
the numerical rank. Cost: no pass over the data; one batched SVD per matrix shape, for the weights and
for their shuffled copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from auditor.analyses.base import Analysis, AuditContext
from auditor.analyses.weights_fit import TailFit, fit_power_law, mp_spikes, rank, shuffled, singular_values
from auditor.analyses.weights_report import alpha_figure, esd_figure, layer_table
from auditor.findings import Finding, Severity
from auditor.report.schema import Section
from auditor.subject import Modality, Task

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


class Weights(Analysis):
    """The spectrum of every weight matrix: power-law α, spikes, correlation traps and rank; no data needed."""

    id: ClassVar[str] = "weights"
    title: ClassVar[str] = "Weight spectra"
    modalities: ClassVar[frozenset[Modality]] = frozenset({"text", "image", "tabular", "noise", "none"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "embedding", "generation"})
    params_type: ClassVar[type[BaseModel]] = WeightsParams
    needs_data: ClassVar[bool] = False
    cost_note: ClassVar[str] = ("no pass over the data: one batched SVD per matrix shape, of the weights and "
                                "of their shuffled copy")

    def __init__(self, params: WeightsParams | None = None) -> None:
        self.params: WeightsParams = params or WeightsParams()

    def run(self, ctx: AuditContext) -> Section:
        layers, skipped = layer_spectra(ctx.tree.modules(), self.params, seed=ctx.config.seed)
        return self._section(ctx, layers, skipped)

    def _section(self, ctx: AuditContext, layers: list[LayerSpectrum], skipped: dict[str, str]) -> Section:
        p = self.params
        findings = [f for layer in layers for f in _layer_findings(layer, p)]
        findings += [Finding(id="weights.non_finite", severity=Severity.FAIL, module=name,
                             message=f"{name or 'The model'} holds {reason.removeprefix(NON_FINITE + ': ')} weights: "
                                     "every output computed from them is NaN or Inf.",
                             evidence={"weights": reason.removeprefix(NON_FINITE + ": ")})
                     for name, reason in skipped.items() if reason.startswith(NON_FINITE)]
        fitted = [la for la in layers if la.fit.alpha is not None]
        alphas = [float(la.fit.alpha) for la in fitted if la.fit.alpha is not None]
        below = [la for la in fitted if la.fit.alpha is not None and la.fit.alpha < p.over_trained_alpha]
        above = [la for la in fitted if la.fit.alpha is not None and la.fit.alpha > p.under_trained_alpha]
        noise = [la for la in layers if la.random_like]
        metrics: dict[str, float] = {
            "layers": float(len(layers)), "fitted_layers": float(len(fitted)),
            "layers_outside_band": float(len(below) + len(above) + len(noise)),
            "layers_under_trained": float(len(above) + len(noise)), "layers_over_trained": float(len(below)),
            "layers_random_like": float(len(noise)),
            "layers_with_traps": float(sum(1 for la in layers if la.traps)),
            "layers_rank_collapsed": float(sum(1 for f in findings if f.id == "weights.rank_collapse")),
        }
        if alphas:
            metrics["mean_alpha"] = float(np.mean(alphas))
            metrics["median_alpha"] = float(np.median(alphas))
            metrics["mean_alpha_weighted"] = float(np.mean([la.alpha_weighted for la in fitted]))
        if layers:
            findings.append(_summary(layers, alphas, below=len(below), above=len(above), noise=len(noise), p=p))
        conv = "their k×k kernel positions (WeightWatcher's convention)" if p.conv_matrices == "kernel_positions" \
            else "out × in·k·k matrices"
        summary = (f"{len(layers)} weight matrices of the {len(ctx.tree)} modules, read from the weights alone "
                   f"(no pass over the data); convolutions as {conv}."
                   + (f" {len(fitted)} spectra fitted, mean α {metrics['mean_alpha']:.2f}." if alphas else "")
                   + (f" Not analysed: {', '.join(list(skipped)[:5])}{' …' if len(skipped) > 5 else ''} "
                      "(see details.skipped)." if skipped else ""))
        order = ("weights.under_trained", "weights.over_trained", "weights.rank_collapse", "weights.correlation_trap")
        by_name = {la.name: la for la in layers}
        named = list(dict.fromkeys(f.module for f in sorted(findings, key=lambda f: (order + (f.id,)).index(f.id))
                                   if f.module in by_name))
        shown = [by_name[name] for name in named][:p.figure_layers] if named else _extremes(fitted)[:p.figure_layers]
        figures = [fig for fig in (alpha_figure(layers, low=p.over_trained_alpha, high=p.under_trained_alpha),
                                   esd_figure(shown, named=bool(named))) if fig is not None]
        details = {"conv_matrices": p.conv_matrices, "not_fitted": {la.name: la.fit.failed for la in layers
                                                                     if la.fit.failed}, "skipped": skipped}
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics, findings=findings,
                       tables=[layer_table(layers)] if layers else [], figures=figures,
                       module_metrics={la.name: _module_metrics(la) for la in layers}, details=details)


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


def _module_metrics(layer: LayerSpectrum) -> dict[str, float]:
    """The layer's numbers for diffs, policies and module cards; a failed fit leaves its keys out."""
    out: dict[str, float] = {"weight_stable_rank": layer.stable_rank,
                             "weight_rank_fraction": layer.rank / layer.full_rank if layer.full_rank else 0.0}
    if layer.lambda_max > 0:
        out["weight_log_spectral_norm"] = math.log10(layer.lambda_max)
    if layer.fit.alpha is not None and layer.fit.ks is not None and layer.alpha_weighted is not None:
        out.update(weight_alpha=layer.fit.alpha, weight_alpha_weighted=layer.alpha_weighted,
                   weight_fit_ks=layer.fit.ks)
    if layer.spikes is not None:
        out["weight_spikes"] = float(layer.spikes)
    if layer.traps is not None:
        out["weight_traps"] = float(layer.traps)
    return out


def _fit_words(layer: LayerSpectrum) -> str:
    fit = layer.fit
    return f"KS distance {fit.ks:.3f} over the top {fit.n_tail} of {len(layer.evals)} eigenvalues"


def _layer_findings(layer: LayerSpectrum, p: WeightsParams) -> list[Finding]:
    findings = []
    alpha, name = layer.fit.alpha, layer.name or "(model)"
    evidence: dict[str, float | int | str | bool | None] = {
        "alpha": round(alpha, 4) if alpha is not None else None, "ks": round(layer.fit.ks or 0.0, 4),
        "n_tail": layer.fit.n_tail, "eigenvalues": len(layer.evals)}
    if layer.random_like:
        findings.append(Finding(
            id="weights.under_trained", severity=Severity.WARN, module=layer.name,
            message=f"{name} looks untrained: no eigenvalue of its weights stands above the Marchenko–Pastur edge of "
                    f"a random matrix of its size and noise level ({layer.edge:.3g}; largest {layer.lambda_max:.3g}), "
                    "so its spectrum is that of noise and no power law is fitted.",
            evidence={**evidence, "random_like": True, "spikes": 0, "edge": layer.edge,
                      "lambda_max": layer.lambda_max}))
    elif alpha is not None and alpha > p.under_trained_alpha:
        findings.append(Finding(
            id="weights.under_trained", severity=Severity.WARN, module=layer.name,
            message=f"{name} looks under-trained: the tail of its weight spectrum falls off with α = {alpha:.2f}, "
                    f"above {p.under_trained_alpha:g}, close to a random matrix's ({_fit_words(layer)}"
                    + (f"; {layer.spikes} eigenvalue{'s' * (layer.spikes != 1)} above the random-matrix edge"
                       if layer.spikes is not None else "") + ").",
            evidence={**evidence, "threshold": p.under_trained_alpha, "spikes": layer.spikes}))
    if alpha is not None and alpha < p.over_trained_alpha:
        findings.append(Finding(
            id="weights.over_trained", severity=Severity.WARN, module=layer.name,
            message=f"{name} has a very heavy-tailed weight spectrum, α = {alpha:.2f} below "
                    f"{p.over_trained_alpha:g}: in Martin & Mahoney's studies a sign of over-training or "
                    f"over-fitting ({_fit_words(layer)}).",
            evidence={**evidence, "threshold": p.over_trained_alpha}))
    if layer.traps:
        value, index, z = layer.largest
        findings.append(Finding(
            id="weights.correlation_trap", severity=Severity.WARN, module=layer.name,
            message=f"{name} has a correlation trap: with its weights shuffled, {layer.traps} eigenvalue"
                    f"{'s still stand' if layer.traps != 1 else ' still stands'} above the random-matrix edge "
                    f"(largest {layer.trap_lambda:.3g}, edge {layer.trap_edge:.3g}), so "
                    f"{'they come' if layer.traps != 1 else 'it comes'} "
                    f"from a few outsized weights, not from learned correlations; its largest weight, {value:.3g} "
                    f"at weight[{', '.join(map(str, index))}], lies {z:.0f} standard deviations out.",
            evidence={"traps": layer.traps, "trap_lambda": layer.trap_lambda, "edge": layer.trap_edge,
                      "largest_weight": value, "largest_weight_index": str(list(index)), "largest_weight_z": z}))
    lost = layer.full_rank - layer.rank
    if layer.full_rank and lost > p.rank_collapse_fraction * layer.full_rank:
        pruned = (f"; {layer.zero_rows} of its {layer.shape[0]} rows of weights are all zero"
                  if layer.zero_rows else "")
        findings.append(Finding(
            id="weights.rank_collapse", severity=Severity.WARN, module=layer.name,
            message=f"{name} has collapsed in rank: numerical rank {layer.rank} of {layer.full_rank}, so "
                    f"{lost / layer.full_rank:.0%} of the directions it could map carry nothing{pruned}.",
            evidence={"rank": layer.rank, "full_rank": layer.full_rank, "zero_rows": layer.zero_rows,
                      "threshold": p.rank_collapse_fraction}))
    return findings


def _summary(layers: list[LayerSpectrum], alphas: list[float], *, below: int, above: int, noise: int,
             p: WeightsParams) -> Finding:
    """The model in one sentence: mean α over the fitted layers, how many lie outside the band, which are noise."""
    small = len(layers) - len(alphas) - noise
    band = f"[{p.over_trained_alpha:g}, {p.under_trained_alpha:g}]"
    rest = (f"; {noise} {'is' if noise == 1 else 'are'} random-like (no eigenvalue above the random-matrix edge)"
            if noise else "") + (f"; {small} too small to fit" if small else "")
    if alphas:
        outside = below + above
        message = (f"Across {len(alphas)} fitted weight spectra the mean α is {np.mean(alphas):.2f} (median "
                   f"{np.median(alphas):.2f}); {outside} {'lies' if outside == 1 else 'lie'} outside {band} ({below} "
                   f"below, {above} above){rest}. α compares layers and models of one family; it is not an accuracy.")
    else:
        message = f"No weight spectrum of the {len(layers)} layers was fitted{rest}."
    return Finding(
        id="weights.alpha_summary", severity=Severity.INFO, module=None, message=message,
        evidence={"mean_alpha": round(float(np.mean(alphas)), 4) if alphas else None,
                  "median_alpha": round(float(np.median(alphas)), 4) if alphas else None, "fitted": len(alphas),
                  "below": below, "above": above, "random_like": noise, "too_small": small})


def _extremes(fitted: list[LayerSpectrum]) -> list[LayerSpectrum]:
    """With no layer named by a finding: the lowest and highest α, so the reader still sees two spectra."""
    ranked = sorted(fitted, key=lambda la: la.fit.alpha or 0.0)
    return list(dict.fromkeys([*ranked[:1], *ranked[-1:]]))


__all__ = ["LayerSpectrum", "Weights", "WeightsParams", "layer_spectra", "weight_matrices"]
