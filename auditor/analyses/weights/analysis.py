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
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from auditor.engine.analysis import Analysis, AuditContext
from auditor.analyses.weights.report import alpha_figure, esd_figure, layer_table
from auditor.schema.findings import Finding, Severity
from auditor.schema.report import Section
from auditor.subject import Modality, Task

NON_FINITE = "non-finite weights"
MIN_SPIKE_SIDE = 8
"""Matrices with a smaller side than this get no spike count (the Tracy–Widom law needs some size)."""


from auditor.analyses.weights.spectra import LayerSpectrum, WeightsParams, layer_spectra
from auditor.analyses.weights.findings import FINDINGS
from auditor.schema.findings import Findings


class Weights(Analysis):
    """The spectrum of every weight matrix: power-law α, spikes, correlation traps and rank; no data needed."""

    id: ClassVar[str] = "weights"
    title: ClassVar[str] = "Weight spectra"
    findings: ClassVar[Findings] = FINDINGS
    modalities: ClassVar[frozenset[Modality]] = frozenset({"text", "image", "tabular", "noise", "none"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "embedding", "generation", "causal_lm"})
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
        # A classifier's head may lose one dimension for nothing: softmax ignores a shift shared by every
        # logit, so K classes need rank K - 1 (a two-class logistic head's rows are w and -w).
        head = next((b.name for b in ctx.blocks if b.kind == "head"), None) if ctx.subject.task == "classification" \
            else None
        findings = [f for layer in layers for f in _layer_findings(layer, p, spare=int(layer.name == head))]
        findings = _one_untrained_finding(findings)
        findings += [FINDINGS.finding("non_finite", module=name,
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
            "layers_rank_collapsed": float(sum(1 for f in findings if f.id == FINDINGS.id("rank_collapse"))),
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
        order = tuple(FINDINGS.id(c) for c in ("under_trained", "over_trained", "rank_collapse", "correlation_trap"))
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


def _one_untrained_finding(findings: list[Finding]) -> list[Finding]:
    """Layers whose weights look like noise are one finding when there are several (a model loaded without its
    weights has nothing but such layers): the same fact, once, naming them all."""
    noise = [f for f in findings if f.id == FINDINGS.id("under_trained") and f.evidence.get("random_like")]
    if len(noise) < 2:
        return findings
    names = [f.module or "(model)" for f in noise]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    grouped = FINDINGS.finding(
        "under_trained", severity=Severity.WARN, module=None,
        message=f"{len(names)} layers look untrained: no eigenvalue of their weights stands above the "
                f"Marchenko–Pastur edge of a random matrix of their size and noise level ({shown}); their "
                "spectra are those of noise, as freshly initialized weights are, and no power law is fitted.",
        evidence={"random_like": True, "modules": ", ".join(names), "count": len(names)})
    first = findings.index(noise[0])
    kept = [f for f in findings if f not in noise]
    return [*kept[:first], grouped, *kept[first:]]


def _layer_findings(layer: LayerSpectrum, p: WeightsParams, *, spare: int = 0) -> list[Finding]:
    """What one layer's spectrum says; `spare` dimensions of rank may be missing for nothing (a softmax head)."""
    findings = []
    alpha, name = layer.fit.alpha, layer.name or "(model)"
    evidence: dict[str, float | int | str | bool | None] = {
        "alpha": round(alpha, 4) if alpha is not None else None, "ks": round(layer.fit.ks or 0.0, 4),
        "n_tail": layer.fit.n_tail, "eigenvalues": len(layer.evals)}
    if layer.random_like:
        findings.append(FINDINGS.finding(
            "under_trained", severity=Severity.WARN, module=layer.name,
            message=f"{name} looks untrained: no eigenvalue of its weights stands above the Marchenko–Pastur edge of "
                    f"a random matrix of its size and noise level ({layer.edge:.3g}; largest {layer.lambda_max:.3g}), "
                    "so its spectrum is that of noise and no power law is fitted.",
            evidence={**evidence, "random_like": True, "spikes": 0, "edge": layer.edge,
                      "lambda_max": layer.lambda_max}))
    elif alpha is not None and alpha > p.under_trained_alpha:
        findings.append(FINDINGS.finding(
            "under_trained", module=layer.name,
            message=f"{name} looks under-trained: the tail of its weight spectrum falls off with α = {alpha:.2f}, "
                    f"above {p.under_trained_alpha:g}, close to a random matrix's ({_fit_words(layer)}"
                    + (f"; {layer.spikes} eigenvalue{'s' * (layer.spikes != 1)} above the random-matrix edge"
                       if layer.spikes is not None else "") + ").",
            evidence={**evidence, "threshold": p.under_trained_alpha, "spikes": layer.spikes}))
    if alpha is not None and alpha < p.over_trained_alpha:
        findings.append(FINDINGS.finding(
            "over_trained", module=layer.name,
            message=f"{name} has a very heavy-tailed weight spectrum, α = {alpha:.2f} below "
                    f"{p.over_trained_alpha:g}: in Martin & Mahoney's studies a sign of over-training or "
                    f"over-fitting ({_fit_words(layer)}).",
            evidence={**evidence, "threshold": p.over_trained_alpha}))
    if layer.traps:
        value, index, z = layer.largest
        findings.append(FINDINGS.finding(
            "correlation_trap", module=layer.name,
            message=f"{name} has a correlation trap: with its weights shuffled, {layer.traps} eigenvalue"
                    f"{'s still stand' if layer.traps != 1 else ' still stands'} above the random-matrix edge "
                    f"(largest {layer.trap_lambda:.3g}, edge {layer.trap_edge:.3g}), so "
                    f"{'they come' if layer.traps != 1 else 'it comes'} "
                    f"from a few outsized weights, not from learned correlations; its largest weight, {value:.3g} "
                    f"at weight[{', '.join(map(str, index))}], lies {z:.0f} standard deviations out.",
            evidence={"traps": layer.traps, "trap_lambda": layer.trap_lambda, "edge": layer.trap_edge,
                      "largest_weight": value, "largest_weight_index": str(list(index)), "largest_weight_z": z}))
    lost = layer.full_rank - layer.rank
    if layer.full_rank and lost - spare > p.rank_collapse_fraction * layer.full_rank:
        pruned = (f"; {layer.zero_rows} of its {layer.shape[0]} rows of weights are all zero"
                  if layer.zero_rows else "")
        findings.append(FINDINGS.finding(
            "rank_collapse", module=layer.name,
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
    return FINDINGS.finding(
        "alpha_summary", module=None, message=message,
        evidence={"mean_alpha": round(float(np.mean(alphas)), 4) if alphas else None,
                  "median_alpha": round(float(np.median(alphas)), 4) if alphas else None, "fitted": len(alphas),
                  "below": below, "above": above, "random_like": noise, "too_small": small})


def _extremes(fitted: list[LayerSpectrum]) -> list[LayerSpectrum]:
    """With no layer named by a finding: the lowest and highest α, so the reader still sees two spectra."""
    ranked = sorted(fitted, key=lambda la: la.fit.alpha or 0.0)
    return list(dict.fromkeys([*ranked[:1], *ranked[-1:]]))


__all__ = ["Weights"]
