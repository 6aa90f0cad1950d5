"""The ablation analysis's tables and figures: ranked drops with their intervals, blocks × classes, heads,
units × classes, and the pruning curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from auditor.analyses.ablation.findings import MODULE_KINDS, class_gap, rank_key
from auditor.analyses.ablation.metrics import Curve, Reference, Row
from auditor.kit.removal import Selection, ablated_as
from auditor.kit.figures import axis_labels
from auditor.kit.figures import short_name as short
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Figure, Table

if TYPE_CHECKING:
    from auditor.analyses.ablation.params import AblationParams


def _route(row: Row) -> str:
    route = row.route
    if route is None:
        return "full (remote executor)"
    if route.full_forward:
        return f"full: {route.full_forward}"
    if route.skipped is not None:
        return f"skips {route.skipped:.0%}"
    return "cached prefix"


def _ablated_as(row: Row) -> str:
    return ablated_as(row.target)


def _hit(row: Row) -> str | None:
    gap = class_gap(row)
    return f"{gap[0]} ({gap[1] * 100:.0f})" if gap else None


def tables(ref: Reference, rows: Sequence[Row], selection: Selection, curves: dict[str, Curve],
           p: AblationParams) -> list[Table]:
    out = []
    modules = sorted((r for r in rows if r.target.kind in MODULE_KINDS), key=rank_key)
    conf = f"{p.confidence:.0%}"
    scale = 1.0 if ref.embedding else 100.0
    if modules:
        if ref.embedding:
            columns = ["rank", "module", "ablated", "1 − cos", "low", "high", "pass"]
            body: list[list[Any]] = [[i, r.target.name, _ablated_as(r), r.drop, r.low, r.high, _route(r)]
                                     for i, r in enumerate(modules, start=1)]
        else:
            columns = ["rank", "module", "ablated", "drop (pts)", "low (pts)", "high (pts)", "loss + (nats)", "KL (nats)",
                       "most hit class (pts)", "pass"]
            body = [[i, r.target.name, _ablated_as(r), *_points(r.drop, r.low, r.high), _round(r.loss_increase, 4),
                     _round(r.kl, 4), _hit(r), _route(r)] for i, r in enumerate(modules, start=1)]
        out.append(Table(
            id="ablation.ranked", title="Modules ranked by what their ablation costs", columns=columns, rows=body,
            caption=("Each module's output replaced alone ('ablated': by what; residual blocks by their branches). "
                     + ("1 − cos: cosine distance of the pooled embedding from the intact one. " if ref.embedding else
                        "drop: accuracy points lost; ") + f"low/high: its {conf} paired bootstrap interval over the "
                     "samples. Ties (the whole output collapses) are ranked by loss increase (nats), then KL "
                     "divergence from the intact predictions. 'most hit class': the class whose recall falls most "
                     "(points). 'pass': the share of the forward the cached prefix skipped, or why it ran in full.")))
    heads = sorted((r for r in rows if r.target.kind == "head"), key=rank_key)
    if heads:
        out.append(Table(
            id="ablation.heads", title="Attention heads that matter most",
            columns=["layer", "head", *(["1 − cos", "low", "high"] if ref.embedding else
                                        ["drop (pts)", "low (pts)", "high (pts)", "KL (nats)"])],
            rows=[[r.target.module, r.target.index, *(_points(r.drop, r.low, r.high) if not ref.embedding else
                                                       (r.drop, r.low, r.high))]
                  + ([] if ref.embedding else [_round(r.kl, 4)]) for r in heads[:12]],
            caption=f"The 12 heads (of {len(heads)}) whose removal costs most: each head alone, its slice of the "
                    "input to the attention output projection replaced. Every head is in the heat map and in "
                    "module_metrics as `<module>#head<h>`."))
    units = [r for r in rows if r.target.kind == "unit"]
    if units and not ref.embedding:
        ranked = sorted(units, key=lambda r: -(class_gap(r) or ("", 0.0, 0.0))[1])
        body = []
        for layer in selection.unit_layers:
            for r in [u for u in ranked if u.target.module == layer][:8]:
                body.append([layer, r.target.index, _hit(r), *_points(r.drop), _round(r.kl, 4)])
        out.append(Table(id="ablation.units", title="Units whose ablation hits one class hardest",
                         columns=["layer", "unit", "most hit class (pts)", "drop (pts)", "KL (nats)"], rows=body,
                         caption="Per unit layer, the 8 units whose ablation alone takes most off one class's recall "
                                 "(points); drop: accuracy points lost. module_metrics hold every unit, as "
                                 "`<layer>#<unit>`."))
    if curves:
        fractions = sorted({f for f in p.prune_fractions})
        body = []
        for layer, curve in curves.items():
            for method, points in curve.items():
                body.append([layer, "smallest L1" if method == "l1" else "random",
                             *[_round(_nearest(points, f) * scale, 1 if not ref.embedding else 4) for f in fractions]])
        out.append(Table(id="ablation.pruning", title="Kernel pruning: " + ("1 − cos" if ref.embedding else
                                                                            "accuracy (%)") + " by share removed",
                         columns=["layer", "order", *[f"{f:.0%}" for f in fractions]], rows=body,
                         caption="Share of the layer's kernels (output channels or neurons) removed, smallest L1 norm "
                                 "first or at random, zeroed after any BatchNorm that follows (a BatchNorm rescales "
                                 "what precedes it, so there a kernel's L1 norm says little of its use)"
                                 + ("" if ref.embedding else f"; intact: {ref.accuracy * 100:.1f}%") + "."))
    return out


def _round(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _points(*values: float) -> list[float | None]:
    """Accuracy fractions as points, to 0.01."""
    return [_round(v * 100, 2) for v in values]


def _nearest(points: Sequence[tuple[float, float]], fraction: float) -> float:
    """The value at the step whose share removed is nearest `fraction` (a small layer rounds shares)."""
    return min(points, key=lambda fv: abs(fv[0] - fraction))[1]


def figures(ref: Reference, rows: Sequence[Row], selection: Selection, curves: dict[str, Curve],
            p: AblationParams) -> list[Figure]:
    return [f for f in (_drops(ref, rows, p), _classes(ref, rows), _heads(ref, rows, selection),
                        _units(ref, rows, selection), _pruning(ref, curves)) if f is not None]


def _drops(ref: Reference, rows: Sequence[Row], p: AblationParams) -> Figure | None:
    shown = sorted((r for r in rows if r.target.kind in MODULE_KINDS), key=rank_key)[:p.top]
    if not shown:
        return None
    names = axis_labels([r.target.name for r in shown], 34)
    names = [f"{n} (branch{'es' * (len(r.target.branches) > 1)})" if r.target.branches else n
             for n, r in zip(names, shown, strict=True)]
    ys = np.arange(len(shown))
    drops = np.array([r.drop for r in shown])
    err = np.array([[max(r.drop - r.low, 0.0) for r in shown], [max(r.high - r.drop, 0.0) for r in shown]])
    colours = ["#7c3aed" if r.target.branches else "#2563eb" if r.target.kind == "block" else "#64748b" for r in shown]
    panels = 1 if ref.embedding else 2
    with new_figure(8.0, 1.2 + 0.24 * len(shown)) as (fig, _):
        fig.clf()
        axes = fig.subplots(1, panels, sharey=True, squeeze=False,
                            gridspec_kw={"width_ratios": [3, 2][:panels]})[0]
        ax = axes[0]
        ax.barh(ys, drops * (1 if ref.embedding else 100), xerr=err * (1 if ref.embedding else 100), color=colours,
                error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#111827"})
        ax.set_yticks(ys, names, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="#6b7280", lw=0.8)
        ax.set_xlabel("1 − cosine similarity of the pooled embedding" if ref.embedding else "accuracy drop (points)",
                      fontsize=8)
        if panels == 2:
            loss = [r.loss_increase if math.isfinite(r.loss_increase) else np.nan for r in shown]
            axes[1].barh(ys, loss, color="#f59e0b")
            axes[1].axvline(0, color="#6b7280", lw=0.8)
            axes[1].set_xlabel("loss increase (nats)", fontsize=8)
        for a in axes:
            a.tick_params(axis="x", labelsize=7)
            a.spines[["top", "right"]].set_visible(False)
        return to_figure(fig, id="ablation.drops", title="What each module's ablation costs",
                         alt="Horizontal bars of the accuracy drop of each ablated module with its interval, and "
                             "its loss increase",
                         caption=f"The {len(shown)} modules whose ablation costs most, with {p.confidence:.0%} "
                                 "paired bootstrap intervals. Blue: blocks; purple: residual blocks ablated by their "
                                 "branches; grey: other modules. Ties are ranked by loss increase.")


def _classes(ref: Reference, rows: Sequence[Row]) -> Figure | None:
    if ref.embedding or len(ref.classes) < 2:
        return None
    shown = [r for r in rows if r.target.kind == "block"]
    if len(shown) < 2:
        shown = sorted((r for r in rows if r.target.kind in MODULE_KINDS), key=rank_key)[:12]
    if len(shown) < 2:
        return None
    classes = list(ref.classes)
    grid = np.array([[r.class_drops.get(c, np.nan) * 100 for c in classes] for r in shown])
    names = axis_labels([r.target.name for r in shown])
    with new_figure(min(8.0, 3.0 + 0.45 * len(classes)), 1.4 + 0.3 * len(shown)) as (fig, ax):
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-100, vmax=100, aspect="auto")
        ax.set_xticks(range(len(classes)), [short(c, 12) for c in classes], rotation=45 if len(classes) > 4 else 0,
                      ha="right" if len(classes) > 4 else "center", fontsize=8)
        ax.set_yticks(range(len(shown)), names, fontsize=7)
        ax.set_xlabel("class", fontsize=8)
        if grid.size <= 200:
            for (i, j), value in np.ndenumerate(grid):
                if np.isfinite(value) and abs(value) >= 5:
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(value) > 60 else "#111827")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="recall drop (points)")
        return to_figure(fig, id="ablation.classes", title="Recall drop per class",
                         alt="Heat map of ablated blocks against classes, coloured by the drop of the class's recall",
                         caption="How much each class's recall falls when the block is ablated (red: falls, blue: "
                                 "rises). A row red in one column only: the block carries that class.")


def _heads(ref: Reference, rows: Sequence[Row], selection: Selection) -> Figure | None:
    heads = [r for r in rows if r.target.kind == "head"]
    if not heads or selection.heads < 2:
        return None
    layers = selection.head_modules
    by = {(r.target.module, r.target.index): r for r in heads}
    drop = np.array([[by[(m, h)].drop * (1 if ref.embedding else 100) if (m, h) in by else np.nan
                      for h in range(selection.heads)] for m in layers])
    panels = [("1 − cos" if ref.embedding else "accuracy drop (points)", drop, "RdBu_r")]
    if not ref.embedding:
        kl = np.array([[by[(m, h)].kl if (m, h) in by else np.nan for h in range(selection.heads)] for m in layers])
        panels.append(("KL from the intact predictions", kl, "magma_r"))
    width = min(8.0, 1.6 + len(panels) * (1.2 + 0.3 * selection.heads))
    with new_figure(width, 1.5 + 0.3 * len(layers)) as (fig, _):
        fig.clf()
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (label, grid, cmap) in zip(axes, panels, strict=True):
            finite = grid[np.isfinite(grid)]
            if cmap == "RdBu_r":
                bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
                image = ax.imshow(grid, cmap=cmap, vmin=-bound, vmax=bound, aspect="auto")
            else:
                image = ax.imshow(grid, cmap=cmap, vmin=0, aspect="auto")
            ax.set_xticks(range(selection.heads), [str(h) for h in range(selection.heads)], fontsize=7)
            ax.set_yticks(range(len(layers)), axis_labels(layers, 22) if ax is axes[0] else [""] * len(layers),
                          fontsize=7)
            ax.set_xlabel("head", fontsize=8)
            cbar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
            cbar.set_label(label, fontsize=7)
            cbar.ax.tick_params(labelsize=7)
        return to_figure(fig, id="ablation.heads", title="Attention heads",
                         alt="Heat maps of attention layers against heads, coloured by the accuracy drop and the KL "
                             "divergence when the head is removed",
                         caption="Each head removed alone (its slice of the input to the attention output projection "
                                 "replaced). Compare heads within a row and across layers.")


def _units(ref: Reference, rows: Sequence[Row], selection: Selection) -> Figure | None:
    if ref.embedding or len(ref.classes) < 2:
        return None
    layers = [(layer, [r for r in rows if r.target.kind == "unit" and r.target.module == layer])
              for layer in selection.unit_layers]
    layers = [(layer, units) for layer, units in layers if units]
    if not layers:
        return None
    classes = list(ref.classes)
    shown = 16
    with new_figure(min(8.0, 2.2 + len(layers) * (1.0 + 0.32 * len(classes))), 1.6 + 0.17 * shown) as (fig, _):
        fig.clf()
        axes = fig.subplots(1, len(layers), squeeze=False)[0]
        image = None
        every = [abs(v) for _, units in layers for r in units for v in r.class_drops.values() if math.isfinite(v)]
        bound = max(max(every, default=0.0) * 100, 5.0)  # the scale of what single units do, not of a collapse
        for ax, (layer, units) in zip(axes, layers, strict=True):
            top = sorted(units, key=lambda r: -(class_gap(r) or ("", 0.0, 0.0))[1])[:shown]
            grid = np.array([[r.class_drops.get(c, np.nan) * 100 for c in classes] for r in top])
            image = ax.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
            ax.set_yticks(range(len(top)), [f"#{r.target.index}" for r in top], fontsize=7)
            ax.set_xticks(range(len(classes)), [short(c, 10) for c in classes], fontsize=7,
                          rotation=45 if len(classes) > 4 else 0, ha="right" if len(classes) > 4 else "center")
            ax.set_title(short(layer, 30), fontsize=8)
        if image is not None:
            cbar = fig.colorbar(image, ax=axes[-1], fraction=0.08, pad=0.04)
            cbar.set_label("recall drop (points)", fontsize=7)
            cbar.ax.tick_params(labelsize=7)
        return to_figure(fig, id="ablation.units", title="Single units and the classes they carry",
                         alt="Heat maps of single units against classes, coloured by the recall drop when the unit "
                             "is ablated alone",
                         caption=f"Per unit layer, the {shown} units whose ablation alone takes most off one class's "
                                 "recall. One red cell in a row: the unit carries that class.")


def _pruning(ref: Reference, curves: dict[str, Curve]) -> Figure | None:
    if not curves:
        return None
    layers = list(curves)
    cols = min(3, len(layers))
    rows_n = math.ceil(len(layers) / cols)
    with new_figure(8.0, 0.6 + 2.3 * rows_n) as (fig, _):
        fig.clf()
        axes = fig.subplots(rows_n, cols, squeeze=False, sharey=True)
        for i, layer in enumerate(layers):
            ax = axes[i // cols][i % cols]
            for method, colour in (("l1", "#2563eb"), ("random", "#f59e0b")):
                points = curves[layer].get(method, [])
                if points:
                    scale = 1.0 if ref.embedding else 100.0
                    xs = [0.0] + [f for f, _ in points]
                    ys = [(0.0 if ref.embedding else ref.accuracy) * scale] + [v * scale for _, v in points]
                    ax.plot(xs, ys, marker="o", ms=2.5, lw=1.2, color=colour,
                            label="smallest L1 first" if method == "l1" else "random")
            if not ref.embedding:
                ax.axhline(ref.accuracy * 100, color="#6b7280", lw=0.7, ls="--")
            ax.set_title(short(layer, 34), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlim(0, 1)
            ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
            ax.spines[["top", "right"]].set_visible(False)
        for j in range(len(layers), rows_n * cols):
            axes[j // cols][j % cols].axis("off")
        axes[0][0].legend(fontsize=7, frameon=False)
        fig.supxlabel("share of the layer's kernels removed", fontsize=8)
        fig.supylabel("1 − cos" if ref.embedding else "accuracy (%)", fontsize=8)
        return to_figure(fig, id="ablation.pruning", title="Kernel pruning curves",
                         alt="Line charts of accuracy against the share of each layer's kernels removed, by smallest "
                             "L1 norm and at random",
                         caption="Structured pruning of each layer: kernels removed by smallest L1 norm (blue) or at "
                                 "random (orange), zeroed after any BatchNorm that follows. Dashed: the intact model. "
                                 "A curve that stays flat far to the right: the layer uses little of its capacity.")


__all__ = ["figures", "tables"]
