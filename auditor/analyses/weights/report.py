"""The weights analysis on paper: the per-layer table, α by layer with the [2, 6] band, and ESD panels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Cell, Figure, Table

if TYPE_CHECKING:
    from auditor.analyses.weights.spectra import LayerSpectrum

MAX_NAMED_TICKS = 40


def _tail(name: str, limit: int = 30) -> str:
    """The end of a dotted module name, short enough for an axis label."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _matrices(layer: LayerSpectrum) -> str:
    size = f"{layer.n}×{layer.m}"
    return size if layer.matrices == 1 else f"{layer.matrices} × {size}"


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _fit_cell(layer: LayerSpectrum) -> str:
    """The table's word on the fit: the tail it used, or (briefly) why there is no α."""
    if layer.fit.alpha is not None:
        return f"top {layer.fit.n_tail} of {len(layer.evals)}"
    if layer.random_like:
        return "rejected: noise"
    return (layer.fit.failed or "not fitted").split(";")[0].split(" (")[0]


def layer_table(layers: list[LayerSpectrum]) -> Table:
    """One row per weight matrix, in model order; a layer that was not fitted says why instead of an α."""
    rows: list[list[Cell]] = []
    for la in layers:
        fit = la.fit
        rows.append([
            la.name or "(model)", _matrices(la), _round(fit.alpha, 3), _round(fit.se, 3), _round(fit.ks, 3),
            _round(math.log10(la.lambda_max), 3) if la.lambda_max > 0 else None, _round(la.alpha_weighted, 3),
            _round(la.stable_rank, 1), la.spikes, la.traps, f"{la.rank}/{la.full_rank}", _fit_cell(la),
        ])
    return Table(
        id="weights.layers", title="Weight spectrum of each layer",
        columns=["layer", "matrices N×M", "α", "s.e.", "KS D", "log λmax", "α·log λmax", "stable rank", "spikes",
                 "traps", "rank", "tail fitted"],
        rows=rows,
        caption="Eigenvalues λ of WᵀW per layer, pooled over its matrices (a convolution's kernel positions). α: "
                "exponent of the power-law tail p(λ) ∝ λ^-α above x_min (maximum likelihood, x_min by the KS "
                "distance D), with its standard error; in [2, 6] for most layers of well-trained models (Martin & "
                "Mahoney 2021). log λmax: log₁₀ of the largest eigenvalue; stable rank: Σλ / λmax. Spikes: "
                "eigenvalues above the Marchenko–Pastur edge of a random matrix of the same size and noise level, "
                "beyond its Tracy–Widom fluctuation; traps: the same count once the weights are shuffled (single "
                "large weights, not structure). Rank: numerical rank of full rank. \"rejected: noise\": no "
                "eigenvalue above the edge, so no power law is fitted.",
    )


def alpha_figure(layers: list[LayerSpectrum], *, low: float, high: float) -> Figure | None:
    """α of every fitted layer in model order, against the band; layers not fitted as grey marks below."""
    fitted = [(i, la.fit.alpha) for i, la in enumerate(layers) if la.fit.alpha is not None]
    if not fitted and not any(la.random_like for la in layers):
        return None
    xs = [i for i, _ in fitted]
    ys = [float(a) for _, a in fitted if a is not None]
    named = len(layers) <= MAX_NAMED_TICKS
    bottom, top = min([1.0, *(y * 0.9 for y in ys)]), max([high * 1.6, *(y * 1.15 for y in ys)])
    with new_figure(8.0, 3.8 if named else 3.0) as (fig, ax):
        ax.axhspan(low, high, color="#16a34a", alpha=0.10, lw=0)
        ax.axhline(low, color="#16a34a", lw=0.8, ls="--")
        ax.axhline(high, color="#16a34a", lw=0.8, ls="--")
        ax.plot(xs, ys, color="#94a3b8", lw=0.8, zorder=1)
        inside = [(x, y) for x, y in zip(xs, ys, strict=True) if low <= y <= high]
        outside = [(x, y) for x, y in zip(xs, ys, strict=True) if not low <= y <= high]
        for points, colour in ((inside, "#2563eb"), (outside, "#dc2626")):
            if points:
                ax.scatter([x for x, _ in points], [y for _, y in points], s=22, color=colour, zorder=3)
        noise = [i for i, la in enumerate(layers) if la.random_like]
        unfitted = [i for i, la in enumerate(layers) if la.fit.alpha is None and not la.random_like]
        if unfitted:
            ax.scatter(unfitted, [bottom * 1.04] * len(unfitted), marker="x", s=22, color="#9ca3af", zorder=3)
        if noise:
            ax.scatter(noise, [top / 1.06] * len(noise), marker="^", s=30, facecolors="none", edgecolors="#dc2626",
                       linewidths=1.2, zorder=3)
        ax.set_yscale("log")
        ticks = [t for t in (1, 1.5, 2, 3, 4, 6, 10, 20, 40, 100, 1000) if bottom <= t <= top]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylim(bottom, top)
        ax.set_xlim(-0.6, len(layers) - 0.4)
        if named:
            ax.set_xticks(range(len(layers)), [_tail(la.name) for la in layers], rotation=60, ha="right",
                          fontsize=7)
            ax.set_xlabel("layer, in model order")
        else:
            ax.set_xlabel(f"layer, in model order ({len(layers)} layers)")
        ax.set_ylabel("power-law α (log scale)")
        ax.grid(axis="y", color="#e5e7eb", lw=0.6)
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
        note = (f" Hollow triangles at the top: {len(noise)} layer{'s' * (len(noise) != 1)} whose spectrum is that "
                "of noise (no eigenvalue above the random-matrix edge; no α)." if noise else "") + \
            (f" Grey crosses: {len(unfitted)} layer{'s' * (len(unfitted) != 1)} too small to fit." if unfitted else "")
        return to_figure(fig, id="weights.alpha_by_layer", title="Power-law α by layer",
                         alt="Dot plot of each layer's power-law exponent alpha in model order, with the band "
                             f"from {low:g} to {high:g} shaded",
                         caption=f"α of each layer's weight spectrum in model order; green band [{low:g}, {high:g}]: "
                                 "where most layers of well-trained models fall (Martin & Mahoney 2021); red: "
                                 f"outside it.{note} α compares layers and models of one family; it is not an "
                                 "accuracy.")


def esd_figure(layers: list[LayerSpectrum], *, named: bool) -> Figure | None:
    """Log-log ESD panels with the fitted power law from x_min and the random-matrix edge."""
    layers = [la for la in layers if len(la.evals) >= 2]
    if not layers:
        return None
    cols = min(3, len(layers))
    rows = math.ceil(len(layers) / cols)
    import matplotlib.pyplot as plt

    with new_figure(3.0 * cols, 2.5 * rows) as (fig, _):
        fig.clf()
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, la in zip(axes.flat, layers, strict=False):
            hi = float(la.evals[-1])
            # The tail is what was fitted: show four decades below the fit's x_min (or the edge) and no more,
            # as WeightWatcher's plots do, so near-zero eigenvalues do not squeeze it into a corner.
            floor = min(la.fit.xmin or hi, la.edge or hi) * 1e-4
            lo = max(float(la.evals[0]), floor)
            evals = la.evals[la.evals >= lo]
            edges = np.logspace(math.log10(lo), math.log10(hi) + 1e-9, 40) if hi > lo \
                else np.array([lo * 0.9, hi * 1.1])
            counts, _ = np.histogram(evals, bins=edges)
            density = counts / (len(la.evals) * np.diff(edges))
            ax.stairs(np.where(density > 0, density, np.nan), edges, color="#2563eb", fill=True, alpha=0.35)
            fit = la.fit
            if fit.alpha is not None and fit.xmin is not None:
                xs = np.logspace(math.log10(fit.xmin), math.log10(hi), 50)
                share = fit.n_tail / len(la.evals)
                ax.plot(xs, share * (fit.alpha - 1) / fit.xmin * (xs / fit.xmin) ** -fit.alpha, color="#dc2626",
                        lw=1.4, label=f"α = {fit.alpha:.2f}")
                ax.axvline(fit.xmin, color="#dc2626", lw=0.8, ls="--")
            if la.edge is not None:
                ax.axvline(la.edge, color="#6b7280", lw=0.9, ls=":", label="random-matrix edge")
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):  # minor ticks over many decades: slow to lay out, no help
                axis.set_major_locator(LogLocator(base=10, numticks=5))
                axis.set_minor_locator(NullLocator())
            state = "" if fit.alpha is not None else " (noise: no fit)" if la.random_like else " (not fitted)"
            ax.set_title(_tail(la.name, 34) + state, fontsize=8)
            ax.tick_params(labelsize=7)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, frameon=False, loc="lower left")
        for ax in list(axes.flat)[len(layers):]:
            ax.set_visible(False)
        fig.supxlabel("eigenvalue λ of WᵀW", fontsize=8)
        fig.supylabel("density", fontsize=8)
        plt.setp(axes, facecolor="white")
        which = "the layers the findings name" if named else "the lowest and the highest α"
        return to_figure(fig, id="weights.esd", title="Spectra of the layers named",
                         alt="Log-log histograms of the eigenvalues of WᵀW of selected layers, with the fitted "
                             "power law and the random-matrix edge",
                         caption=f"Empirical spectral density of {which}: blue, the histogram of the eigenvalues "
                                 "of WᵀW (log-log); red, the fitted power law from x_min (dashed); dotted, the "
                                 "Marchenko–Pastur edge of a random matrix of the same size and noise level, "
                                 "beyond its Tracy–Widom fluctuation.")


__all__ = ["alpha_figure", "esd_figure", "layer_table"]
