"""Gradients: how sensitive the decision is to each module, and how much each module contributes.

One backward per batch in the shared capture gives, for every module at once, the norm of the gradient of
the target (the log-probability of the labelled class) at the module's output, and gradient × activation
summed over the output: the module's first-order contribution to the target (Shrikumar et al., 2016,
"Not Just a Black Box"; Ancona et al., 2018, "Towards better understanding of gradient-based attribution
methods"). What Captum's `LayerGradientXActivation` gives for one layer per call, for all of them.

Modules on one path are separate estimates of the same output, not parts of it, so contributions are
never summed over modules in series; they are compared only within a cut: the blocks of one repeated
stack, the branches that join one residual sum, the heads of one attention layer.

Conductance (Dhamdhere et al., 2019, "How Important Is a Neuron?") is reported where it is informative:
for the branches that join a residual sum (a transformer layer's attention and MLP outputs, a ResNet
block's residual branch against its shortcut, also where a ReLU follows the sum: conductance passes through
an element-wise activation unchanged, so the sum's is read at its output) and per unit of chosen layers. A block that is a full cut
of the graph would only show F(x) - F(baseline) again (completeness). All branches are measured in one
Integrated Gradients sweep (`auditor.engine.conductance`), not one Captum call per branch.

Cost: the capture's backward (one per batch), plus the conductance sweep over a subset of the samples.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.engine.conductance import SweepResult, SweepSpec, run_sweep
from auditor.walk.needs import Needs
from auditor.errors import ConfigError
from auditor.schema.findings import Finding, Severity
from auditor.kit.figures import axis_labels, short_name, new_figure, to_figure
from auditor.schema.report import Cost, Figure, Section, Table
from auditor.subject import Task
from auditor.walk.blocks import Block
from auditor.walk.joins import Join, describe_site
from auditor.walk.recorder import split_call


class GradientsParams(BaseModel):
    """`[analyses.gradients]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vanishing_ratio: float = Field(0.01, gt=0.0, lt=1.0)
    """Warn when the first block of a repeated stack gets less than this share of the last one's gradient norm."""
    exploding_ratio: float = Field(100.0, gt=1.0)
    """Warn when it gets more than this multiple."""
    conductance: bool = True
    """Measure the conductance of residual branches (and of `conductance_units`)."""
    conductance_samples: int = Field(64, ge=1)
    """Samples the conductance sweep runs on (a seeded draw from the audit data)."""
    conductance_steps: int = Field(20, ge=2, le=500)
    """Integration steps along the path (Captum's n_steps)."""
    conductance_rule: Literal["trapezoid", "captum"] = "trapezoid"
    """"trapezoid": evenly spaced points from baseline to input, trapezoid rule (second-order; full cuts carry
    F(x) - F(baseline)). "captum": Captum's Gauss-Legendre points and first-order rule, Captum's exact numbers."""
    baseline: Literal["zeros", "mean"] = "zeros"
    """Image and array inputs: the path starts at a black (zero) input or at the data mean. Text always
    starts at a sequence of pad tokens that keeps [CLS] and [SEP]."""
    conductance_units: tuple[str, ...] = ()
    """Modules whose output gets per-unit conductance (`conductance/<unit>` in module_metrics)."""
    top: int = Field(12, ge=1)
    """Rows per cut in the ranked table."""


class Gradients(Analysis):
    """Per-module gradient norms and gradient × activation, ranked within cuts; conductance of branches."""

    id: ClassVar[str] = "gradients"
    title: ClassVar[str] = "Gradients and contributions"
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification"})
    params_type: ClassVar[type[BaseModel]] = GradientsParams
    cost_note: ClassVar[str] = ("one backward per batch in the shared capture; a conductance sweep of "
                                "steps + 3 forwards and steps + 1 backwards over up to 64 samples")

    def __init__(self, params: GradientsParams | None = None) -> None:
        self.params: GradientsParams = params or GradientsParams()

    def needs(self, ctx: PlanContext) -> Needs:
        _, heads = ctx.attention_heads
        return Needs(gradients=frozenset(ctx.tree.names), unit_relevance=heads)

    def _sweep_spec(self, ctx: PlanContext) -> SweepSpec | None:
        p = self.params
        points = tuple(dict.fromkeys(pt for j in ctx.joins for pt in (j.site, *j.branches)))
        units = frozenset(p.conductance_units)
        unknown = sorted(units - set(ctx.tree.names))
        if unknown:
            raise ConfigError(f"[analyses.gradients] conductance_units names modules the model does not have: "
                              f"{unknown[:5]}")
        if not p.conductance or not (points or units):
            return None
        embeddings = next((b.name for b in ctx.blocks if b.kind == "embeddings"), None)
        if ctx.subject.modality == "text" and embeddings is None:
            return None
        n = len(ctx.subject)
        picked = np.sort(np.random.default_rng(ctx.config.seed).permutation(n)[:min(p.conductance_samples, n)])
        return SweepSpec(points=points, unit_modules=units, samples=tuple(int(i) for i in picked),
                         n_steps=p.conductance_steps, rule=p.conductance_rule, baseline=p.baseline,
                         embeddings=embeddings)

    def cost(self, ctx: PlanContext) -> Cost:
        spec = self._sweep_spec(ctx)
        if spec is None:
            return Cost(note="the capture's backward, one per batch; no conductance sweep")
        batches = math.ceil(len(spec.samples) / ctx.config.batch_size)
        steps = spec.n_steps + 1
        return Cost(forwards=batches * (steps + 2) / ctx.n_batches, backwards=batches * steps / ctx.n_batches,
                    note=f"plus the capture's backward; conductance of {len(spec.points)} points over "
                         f"{len(spec.samples)} samples, {spec.n_steps} steps")

    def run(self, ctx: AuditContext) -> Section:
        p = self.params
        grad_norm, grad_x_act = ctx.capture.gradients()
        classes = ctx.subject.labels if ctx.subject.labels is not None else ctx.clean.predictions
        names = ctx.subject.class_names
        records = ctx.capture.records
        # A module called more than once per forward: the module over all its calls (gradients summed), then
        # each call (`<name>@<k>`).
        ran = [k for n in ctx.tree.names for k in (n, *ctx.capture.call_keys(n)) if k in grad_norm and records[k].calls > 0]
        module_metrics: dict[str, dict[str, float]] = {}
        for name in ran:
            module_metrics[name] = _per_module(grad_norm[name], grad_x_act[name], classes, names)
        heads, head_modules = ctx.attention_heads
        for name in sorted(head_modules & set(ctx.capture.unit_relevance)):
            per_head = ctx.capture.unit_relevance[name].reshape(len(classes), heads, -1).sum(dim=2)
            for h in range(heads):
                module_metrics.setdefault(name, {})[f"head_abs_grad_x_act/{h}"] = float(per_head[:, h].abs().mean())
        findings = [*_no_influence(ctx, ran, grad_norm), *_vanishing(ctx, module_metrics, p)]
        sweep = None
        spec = self._sweep_spec(ctx)
        if spec is not None:
            sweep = run_sweep(ctx.subject, ctx.tree, spec, labels=classes, batch_size=ctx.config.batch_size,
                              progress=ctx.progress)
            _add_conductance(module_metrics, ctx.joins, sweep)
        cuts = _cuts(ctx, module_metrics, heads, head_modules)
        tables = [_ranked_table(cuts, module_metrics, p.top)]
        joins_table = _joins_table(ctx.joins, sweep) if sweep is not None else None
        if joins_table is not None:
            tables.append(joins_table)
        figures = [f for f in (
            _cut_bars(cuts, module_metrics),
            _class_heatmap(_by_call(ctx, [b.name for b in ctx.blocks], module_metrics), module_metrics, names),
            _norm_profile(ctx, grad_norm),
            _conductance_figure(ctx.joins, sweep),
            _heads_figure(head_modules, module_metrics, heads),
        ) if f is not None]
        metrics = {"modules_with_gradient": float(sum(1 for n in ran if n in ctx.tree)),
                   "no_influence_modules": float(sum(1 for f in findings if f.id == "gradients.no_influence")),
                   "mean_target": float(ctx.capture.targets.mean()) if ctx.capture.targets is not None else math.nan}
        if sweep is not None and sweep.delta is not None:
            metrics["conductance_samples"] = float(len(sweep.samples))
            metrics["mean_target_gain"] = float(sweep.delta.mean())
        reused = [n for n in ctx.capture.calls if n in grad_norm]
        summary = (f"Gradient of the target (log-probability of the {'labelled' if ctx.subject.labels is not None else 'predicted'} "
                   f"class) at the output of {int(metrics['modules_with_gradient'])} modules, from one backward per batch"
                   + (f"; {len(reused)} module{'s' * (len(reused) != 1)} called more than once per forward "
                      f"({', '.join(reused[:3])}{', …' if len(reused) > 3 else ''}) also per call (`<module>@<call>`), "
                      "the module's own numbers summing its calls" if reused else "")
                   + (f"; conductance of {len(ctx.joins)} residual join{'s' * (len(ctx.joins) != 1)} over "
                      f"{len(sweep.samples)} samples ({spec.n_steps if spec else 0} steps, "
                      f"{'trapezoid rule' if spec is None or spec.rule == 'trapezoid' else 'Captum’s rule'})"
                      if sweep is not None else "") + ". Contributions are compared only within a cut.")
        shared = sorted(ctx.capture.not_per_sample)
        if shared:
            summary += (f" {len(shared)} module{'s' * (len(shared) != 1)} return{'s' * (len(shared) == 1)} one output "
                        f"shared by the whole batch ({', '.join(shared[:3])}{', …' if len(shared) > 3 else ''}), "
                        "which has no per-sample gradient; not shown.")
        details: dict[str, Any] = {"cuts": {k: v for k, v in cuts.items()},
                                   "joins": [_join_detail(j) for j in ctx.joins], "not_per_sample": shared}
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics, tables=tables,
                       figures=figures, findings=findings, module_metrics=module_metrics, details=details)


# --- numbers ---------------------------------------------------------------------------------------------

def _per_module(norm: torch.Tensor, gxa: torch.Tensor, classes: torch.Tensor, names: list[str]) -> dict[str, float]:
    values = {"grad_norm": float(norm.double().mean()), "grad_x_act": float(gxa.double().mean()),
              "abs_grad_x_act": float(gxa.double().abs().mean())}
    for c in sorted(set(classes.tolist())):
        if c < 0:
            continue  # a non-finite prediction has no class
        mask = classes == c
        label = names[c] if c < len(names) else str(c)
        values[f"grad_norm/{label}"] = float(norm[mask].double().mean())
        values[f"grad_x_act/{label}"] = float(gxa[mask].double().mean())
        values[f"abs_grad_x_act/{label}"] = float(gxa[mask].double().abs().mean())
    return values


def _add_conductance(module_metrics: dict[str, dict[str, float]], joins: list[Join], sweep: SweepResult) -> None:
    for join in joins:
        total = sweep.conductance.get(join.site)
        branch_total = torch.zeros_like(total) if total is not None else None
        for branch in join.branches:
            value = sweep.conductance.get(branch)
            if value is None:
                continue
            module_metrics.setdefault(branch.module, {})["conductance"] = float(value.double().mean())
            if branch_total is not None:
                branch_total = branch_total + value
        if total is not None and join.branches:  # the sum and the stream's share go with the join's last branch
            last = module_metrics.setdefault(join.branches[-1].module, {})
            last["sum_conductance"] = float(total.double().mean())
            if join.stream is not None and branch_total is not None:
                last["stream_conductance"] = float((total - branch_total).double().mean())
    for name, per_unit in sweep.per_unit.items():
        values = module_metrics.setdefault(name, {})
        values["conductance"] = float(per_unit.sum(dim=1).double().mean())
        for unit, value in enumerate(per_unit.double().mean(dim=0).tolist()):
            values[f"conductance/{unit}"] = value


def _no_influence(ctx: AuditContext, ran: list[str], grad_norm: dict[str, torch.Tensor]) -> list[Finding]:
    """Modules (and calls of reused modules) that ran but whose output the target does not depend on at all; the
    outermost of each subtree."""
    silent = [n for n in ran if n and not bool(torch.count_nonzero(grad_norm[n]))]
    silent_set = set(silent)
    findings = []
    for name in silent:
        module, call = split_call(name) if name not in ctx.tree else (name, None)
        if call is not None:
            if module in silent_set:
                continue  # the module is reported, with all its calls
            findings.append(Finding(
                id="gradients.no_influence", severity=Severity.INFO, module=name,
                message=(f"Call {call} of {module} ({ctx.tree.nodes[module].type}) runs, but the decision does not "
                         f"depend on what it returns: its gradient is exactly zero on all {len(ctx.subject)} samples, "
                         "while the module's other calls matter. That call's compute is spent for nothing."),
                evidence={"samples": len(ctx.subject), "call": call}))
            continue
        parent = ctx.tree.nodes[name].parent
        if parent in silent_set:
            continue  # its container is reported
        below = [n for n in silent if n.startswith(f"{name}.")]
        findings.append(Finding(
            id="gradients.no_influence", severity=Severity.INFO, module=name,
            message=(f"{name} ({ctx.tree.nodes[name].type}) runs, but the decision does not depend on its output: "
                     f"its gradient is exactly zero on all {len(ctx.subject)} samples"
                     + (f" (as for the {len(below)} module{'s' * (len(below) != 1)} inside it)" if below else "")
                     + ". Its compute is spent for nothing, or the wiring is not what was intended."),
            evidence={"samples": len(ctx.subject), "modules_inside": len(below)},
        ))
    return findings


def _groups(blocks: list[Block], ctx: AuditContext) -> dict[str, list[str]]:
    """Repeated blocks by their stack, keeping only those of the stack's most common type and shape."""
    groups: dict[str, list[str]] = defaultdict(list)
    for b in blocks:
        if b.kind == "layer" and b.group is not None:
            groups[b.group].append(b.name)
    out = {}
    for group, members in groups.items():
        keyed: dict[tuple[str, str], list[str]] = defaultdict(list)
        for m in members:
            shape = ctx.capture.records[m].shape
            keyed[(ctx.tree.nodes[m].type, str(shape))].append(m)
        best = max(keyed.values(), key=len)
        if len(best) >= 2:
            order = {n: ctx.capture.records[n].order or 0 for n in best}
            out[group] = sorted(best, key=lambda n: order[n])
    return out


def _vanishing(ctx: AuditContext, module_metrics: dict[str, dict[str, float]], p: GradientsParams) -> list[Finding]:
    findings = []
    for group, members in _groups(ctx.blocks, ctx).items():
        norms = [module_metrics.get(m, {}).get("grad_norm", math.nan) for m in members]
        first, last = norms[0], norms[-1]
        if not (math.isfinite(first) and math.isfinite(last)) or last <= 0:
            continue
        ratio = first / last
        kind = "vanishing" if ratio < p.vanishing_ratio else "exploding" if ratio > p.exploding_ratio else None
        if kind is None:
            continue
        findings.append(Finding(
            id=f"gradients.{kind}", severity=Severity.WARN, module=group,
            message=(f"The gradient {'shrinks' if kind == 'vanishing' else 'grows'} {max(ratio, 1 / ratio):.3g}-fold "
                     f"from the last to the first of the {len(members)} blocks of {group} ({members[-1]}: "
                     f"{last:.3g}, {members[0]}: {first:.3g}); the early blocks "
                     f"{'barely' if kind == 'vanishing' else 'overly'} affect the decision and train "
                     f"{'slowly' if kind == 'vanishing' else 'unstably'}."),
            evidence={"first_block": members[0], "last_block": members[-1], "first_grad_norm": first,
                      "last_grad_norm": last, "ratio": ratio,
                      "threshold": p.vanishing_ratio if kind == "vanishing" else p.exploding_ratio},
        ))
    return findings


def _cuts(ctx: AuditContext, module_metrics: dict[str, dict[str, float]], heads: int,
          head_modules: frozenset[str]) -> dict[str, list[str]]:
    """Named cuts -> the modules compared within each: repeated stacks, residual joins' branches."""
    cuts: dict[str, list[str]] = {}
    for group, members in _groups(ctx.blocks, ctx).items():
        cuts[f"blocks of {group}"] = [m for m in members if m in module_metrics]
    for join in ctx.joins:
        members = [b.module for b in join.branches if b.module in module_metrics]
        if join.stream is not None and not join.stream.startswith("<") and join.stream in module_metrics:
            members.append(join.stream)
        if len(members) >= 2:
            cuts[f"sum at {join.site.module}" + (f" (before its {join.site.through})" if join.site.through else "")] = \
                members
    if not cuts:  # a plain stack has no cut with parts: its stages are shown in order, not ranked
        stages = _by_call(ctx, [b.name for b in ctx.blocks if b.name in module_metrics], module_metrics)
        if stages:
            cuts[SERIES] = stages
    return cuts


SERIES = "stages, in series (not ranked: each is an estimate of the whole)"


def _by_call(ctx: AuditContext, names: list[str], module_metrics: dict[str, dict[str, float]]) -> list[str]:
    """`names` in execution order, a module called more than once per forward replaced by its calls: each is a
    stage of its own, where it runs (the module's summed numbers are not one point of the series)."""
    expanded = [k for n in names for k in ([c for c in ctx.capture.call_keys(n) if c in module_metrics] or [n])]
    records = ctx.capture.records

    def order(name: str) -> int:
        seen = records[name].order if name in records else None
        return seen if seen is not None else 1 << 30
    return sorted(expanded, key=order)


# --- tables and figures ----------------------------------------------------------------------------------

def _ranked_table(cuts: dict[str, list[str]], module_metrics: dict[str, dict[str, float]], top: int) -> Table:
    rows: list[list[Any]] = []
    for cut, members in cuts.items():
        ranked = members if cut == SERIES else sorted(members, key=lambda m: -module_metrics[m]["abs_grad_x_act"])
        for rank, m in enumerate(ranked[:top] if cut != SERIES else ranked, start=1):
            values = module_metrics[m]
            rows.append([cut, None if cut == SERIES else rank, m, values["abs_grad_x_act"], values["grad_x_act"],
                         values["grad_norm"]])
    return Table(id="gradients.ranked", title="Contributions ranked within each cut",
                 columns=["cut", "rank", "module", "|grad × act|", "grad × act", "grad norm"], rows=rows,
                 caption="Mean over samples of gradient × activation summed over the module's output (signed and "
                         "absolute) and of the gradient's L2 norm. Modules of different cuts are not comparable.")


def _join_detail(join: Join) -> dict[str, Any]:
    return {"block": join.block, "sum_at": describe_site(join.site),
            "branches": [b.module for b in join.branches], "stream": join.stream}


def _joins_table(joins: list[Join], sweep: SweepResult) -> Table | None:
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


def _cut_bars(cuts: dict[str, list[str]], module_metrics: dict[str, dict[str, float]]) -> Figure | None:
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
                         caption="Grey: mean |gradient × activation|; blue/red: its signed mean. In execution order.")


def _class_heatmap(blocks: list[str], module_metrics: dict[str, dict[str, float]], names: list[str]) -> Figure | None:
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


def _norm_profile(ctx: AuditContext, grad_norm: dict[str, torch.Tensor]) -> Figure | None:
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


def _conductance_figure(joins: list[Join], sweep: SweepResult | None) -> Figure | None:
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
                by_block[join.block].append((_tail(branch.module, join.block), float(value.mean())))
                rest = rest - value
        if join.stream is not None:
            at = _tail(join.site.module, join.block) if join.site.module != join.block else "the block's output"
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


def _tail(name: str, block: str) -> str:
    return name[len(block) + 1:] if block and name.startswith(f"{block}.") else name


def _heads_figure(head_modules: frozenset[str], module_metrics: dict[str, dict[str, float]], heads: int) -> Figure | None:
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


__all__ = ["Gradients", "GradientsParams"]
