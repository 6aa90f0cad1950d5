"""The gradients section's tables and figures: contributions within each cut, blocks × classes, the
gradient norm along the network, branch conductance per layer, attention heads."""


from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from auditor.engine.analysis import AuditContext
from auditor.analyses.gradients.conductance import SweepResult
from auditor.kit.figures import axis_labels, short_name, new_figure, to_figure
from auditor.schema.report import Figure, Table
from auditor.walk.joins import Join, describe_site
from auditor.walk.records import split_call




SERIES = "stages, in series (not ranked: each is an estimate of the whole)"
"""The cut of a plain network's stages: each is an estimate of the whole output, so they are not ranked."""
STREAM_PARTS = "heads and MLPs writing to the residual stream"
"""A language model's one cut, ranked by size (`analysis._stream_parts`)."""


def ranked_table(cuts: dict[str, list[str]], module_metrics: dict[str, dict[str, float]], top: int) -> Table:
    rows: list[list[Any]] = []
    for cut, members in cuts.items():
        ranked = members if cut == SERIES else sorted(members, key=lambda m: -module_metrics[m]["abs_grad_x_act"])
        for rank, m in enumerate(ranked[:top] if cut != SERIES else ranked, start=1):
            values = module_metrics[m]
            rows.append([cut, None if cut == SERIES else rank, m, values["abs_grad_x_act"], values["grad_x_act"],
                         values.get("grad_norm")])  # a head (a slice of a module's input) has no norm of its own
    return Table(id="gradients.ranked", title="Contributions ranked within each cut",
                 columns=["cut", "rank", "module", "|grad × act|", "grad × act", "grad norm"], rows=rows,
                 caption="Mean over samples of gradient × activation summed over the module's output (signed and "
                         "absolute) and of the gradient's L2 norm. Modules of different cuts are not comparable.")


def join_detail(join: Join) -> dict[str, Any]:
    return {"block": join.block, "sum_at": describe_site(join.site),
            "branches": [b.module for b in join.branches], "stream": join.stream}


def joins_table(joins: list[Join], sweep: SweepResult) -> Table | None:
    rows: list[list[Any]] = []
    for join in joins:
        total = sweep.conductance.get(join.site)
        if total is None:
            continue
        branch_sum = torch.zeros_like(total)
        for branch in join.branches:
            value = sweep.conductance.get(branch)
            if value is not None:
                branch_sum = branch_sum + value
                rows.append([join.block, branch.module, "branch", float(value.mean()), float(total.mean())])
        if join.stream is not None:
            rows.append([join.block, join.stream, "stream", float((total - branch_sum).mean()), float(total.mean())])
    if not rows:
        return None
    delta = float(sweep.delta.mean()) if sweep.delta is not None else math.nan
    return Table(id="gradients.conductance", title="Conductance of the summands of each residual sum",
                 columns=["block", "summand", "role", "conductance", "conductance of the sum"], rows=rows,
                 caption=f"Mean over {len(sweep.samples)} samples. A branch is read only by the sum; the stream "
                         f"(residual stream, shortcut) is read elsewhere too, or is the shortcut where the width "
                         f"changes, and its share is the sum's minus the branches'. Where an activation follows the "
                         f"sum (relu(branch + shortcut)), the sum's conductance is read at the activation's output, "
                         f"which carries the same. A sum that is a full cut carries all of F(x) − F(baseline) = "
                         f"{delta:.4g}.")


def cut_bars(cuts: dict[str, list[str]], module_metrics: dict[str, dict[str, float]]) -> Figure | None:
    shown = [(c, m) for c, m in cuts.items() if not c.startswith("sum at")][:3]
    if not shown:
        return None
    rows = sum(len(m) for _, m in shown)
    with new_figure(7.5, 1.2 + 0.28 * rows + 0.5 * len(shown)) as (fig, _):
        fig.clf()
        axes = fig.subplots(len(shown), 1, squeeze=False,
                            gridspec_kw={"height_ratios": [max(len(m), 1) for _, m in shown]})[:, 0]
        for ax, (cut, members) in zip(axes, shown, strict=True):
            values = [module_metrics[m]["grad_x_act"] for m in members]
            absolute = [module_metrics[m]["abs_grad_x_act"] for m in members]
            ys = np.arange(len(members))
            ax.barh(ys, absolute, color="#cbd5e1", label="|grad × act|")
            ax.barh(ys, values, height=0.45, color=["#2563eb" if v >= 0 else "#dc2626" for v in values],
                    label="grad × act (signed)")
            ax.set_yticks(ys, axis_labels(members), fontsize=7)
            ax.invert_yaxis()
            ax.axvline(0, color="#6b7280", lw=0.8)
            ax.set_title(cut, fontsize=9, loc="left")
            ax.tick_params(axis="x", labelsize=7)
            ax.spines[["top", "right"]].set_visible(False)
        axes[0].legend(fontsize=7, frameon=False, loc="lower right")
        axes[-1].set_xlabel("mean contribution to the target (log-probability)", fontsize=8)
        return to_figure(fig, id="gradients.cuts", title="Contributions within each cut",
                         alt="Horizontal bars of each block's mean gradient × activation, signed and absolute",
                         caption="Grey: mean |gradient × activation|; blue/red: its signed mean. "
                                 + ("Largest first." if all(c == STREAM_PARTS for c, _ in shown)
                                    else "In execution order."))


def class_heatmap(blocks: list[str], module_metrics: dict[str, dict[str, float]], names: list[str]) -> Figure | None:
    rows = [b for b in blocks if b in module_metrics]
    classes = [c for c in names if any(f"grad_x_act/{c}" in module_metrics[r] for r in rows)]
    if len(rows) < 2 or len(classes) < 2:
        return None
    grid = np.array([[module_metrics[r].get(f"grad_x_act/{c}", np.nan) for c in classes] for r in rows])
    if not np.isfinite(grid).any():
        return None
    bound = float(np.nanmax(np.abs(np.where(np.isfinite(grid), grid, np.nan)))) or 1.0
    with new_figure(min(8.0, 2.6 + 0.5 * len(classes)), 1.4 + 0.3 * len(rows)) as (fig, ax):
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
        ax.set_xticks(range(len(classes)), [short_name(c, 12) for c in classes], rotation=45 if len(classes) > 4 else 0,
                      ha="right" if len(classes) > 4 else "center", fontsize=8)
        ax.set_yticks(range(len(rows)), axis_labels(rows), fontsize=7)
        ax.set_xlabel("class (labelled)", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="mean grad × act")
        return to_figure(fig, id="gradients.classes", title="Contribution per class",
                         alt="Heat map of blocks against classes, coloured by mean gradient × activation",
                         caption="Each block's mean gradient × activation over the samples of each class; red "
                                 "raises the class's log-probability, blue lowers it.")


def norm_profile(ctx: AuditContext, grad_norm: dict[str, torch.Tensor]) -> Figure | None:
    parents = {node.parent for node in ctx.tree.nodes.values()}
    records = ctx.capture.records
    # a module called more than once per forward: one point per call, where it runs
    leaves = sorted((n for n in grad_norm if n not in ctx.capture.calls
                     and (n if n in ctx.tree else split_call(n)[0]) not in parents
                     and records[n].order is not None), key=lambda n: records[n].order or 0)
    values = [float(grad_norm[n].double().mean()) for n in leaves]
    if len(leaves) < 2:
        return None
    with new_figure(8.0, 3.2) as (fig, ax):
        xs = np.arange(len(leaves))
        positive = [v if v > 0 else np.nan for v in values]
        ax.plot(xs, positive, marker="o", ms=2.5, lw=1.0, color="#7c3aed")
        zeros = [i for i, v in enumerate(values) if v == 0]
        if zeros:
            floor = np.nanmin(positive) if np.isfinite(np.nanmin(positive)) else 1e-12
            ax.scatter(zeros, [floor] * len(zeros), marker="x", color="#dc2626", s=18, label="zero gradient")
            ax.legend(fontsize=7, frameon=False)
        ax.set_yscale("log")
        ax.set_xlim(-0.5, len(leaves) - 0.5)
        if len(leaves) <= 28:
            ax.set_xticks(xs, [short_name(n, 22) for n in leaves], rotation=55, ha="right", fontsize=7)
            ax.set_xlabel("leaf module, in execution order", fontsize=8)
        else:
            ax.set_xlabel(f"leaf module, in execution order ({len(leaves)} modules)", fontsize=8)
        ax.set_ylabel("mean ‖∂target/∂output‖", fontsize=8)
        ax.grid(axis="y", color="#e5e7eb", lw=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        return to_figure(fig, id="gradients.profile", title="Gradient norm along the network",
                         alt="Line chart of the mean gradient norm at each leaf module's output, log scale",
                         caption="Mean L2 norm of the target's gradient at each leaf module's output, in execution "
                                 "order (log scale); norms compare across layers only loosely (rescaling one layer "
                                 "and the next leaves the function unchanged).")


def conductance_figure(joins: list[Join], sweep: SweepResult | None) -> Figure | None:
    if sweep is None or not joins:
        return None
    by_block: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for join in joins:
        total = sweep.conductance.get(join.site)
        if total is None:
            continue
        rest = total.clone()
        for branch in join.branches:
            value = sweep.conductance.get(branch)
            if value is not None:
                by_block[join.block].append((tail(branch.module, join.block), float(value.mean())))
                rest = rest - value
        if join.stream is not None:
            at = tail(join.site.module, join.block) if join.site.module != join.block else "the block's output"
            by_block[join.block].append((f"stream at {at}", float(rest.mean())))
    if not by_block:
        return None
    labels = sorted({label for parts in by_block.values() for label, _ in parts},
                    key=lambda s: (s.startswith("stream"), s))
    blocks = list(by_block)
    palette = ["#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#94a3b8", "#64748b", "#cbd5e1", "#0ea5e9"]
    width = 0.8 / max(len(labels), 1)
    with new_figure(8.0, 3.4) as (fig, ax):
        xs = np.arange(len(blocks))
        for i, label in enumerate(labels):
            heights = [dict(by_block[b]).get(label, np.nan) for b in blocks]
            ax.bar(xs + (i - (len(labels) - 1) / 2) * width, heights, width=width, label=short_name(label, 40),
                   color=palette[i % len(palette)])
        ax.axhline(0, color="#6b7280", lw=0.8)
        ax.set_xticks(xs, axis_labels(blocks, 22), rotation=45 if len(blocks) > 6 else 0,
                      ha="right" if len(blocks) > 6 else "center", fontsize=7)
        ax.set_ylabel("mean conductance", fontsize=8)
        ax.legend(fontsize=7, frameon=False, ncol=2)
        ax.spines[["top", "right"]].set_visible(False)
        return to_figure(fig, id="gradients.conductance", title="Conductance of residual branches per block",
                         alt="Grouped bars of the conductance of each residual sum's branches and stream per block",
                         caption="How much of the change of the target from the baseline to the input flows through "
                                 "each branch of a residual sum, and through the stream around it.")


def tail(name: str, block: str) -> str:
    return name[len(block) + 1:] if block and name.startswith(f"{block}.") else name


def heads_figure(head_modules: frozenset[str], module_metrics: dict[str, dict[str, float]], heads: int) -> Figure | None:
    layers = sorted((m for m in head_modules if "head_abs_grad_x_act/0" in module_metrics.get(m, {})),
                    key=lambda m: [int(p) if p.isdigit() else p for p in m.split(".")])
    if not layers or heads < 2:
        return None
    grid = np.array([[module_metrics[m][f"head_abs_grad_x_act/{h}"] for h in range(heads)] for m in layers])
    with new_figure(min(8.0, 2.5 + 0.45 * heads), 1.3 + 0.32 * len(layers)) as (fig, ax):
        image = ax.imshow(grid, cmap="magma_r", aspect="auto")
        ax.set_xticks(range(heads), [str(h) for h in range(heads)], fontsize=7)
        ax.set_yticks(range(len(layers)), axis_labels(layers), fontsize=7)
        ax.set_xlabel("head", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="mean |grad × act|")
        return to_figure(fig, id="gradients.heads", title="Attention heads",
                         alt="Heat map of attention layers against heads, coloured by mean absolute gradient × activation",
                         caption="Each head's share of its layer's attention output, as mean |gradient × activation| "
                                 "summed over the head's dimensions and tokens. Compare heads within a row.")


