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
Integrated Gradients sweep (`auditor.analyses.gradients.conductance`), not one Captum call per branch.

A causal language model is audited the same way, its target the mean log-probability of each text's audited
next tokens: per module, and per attention head, as gradient × input of the attention output projection (a
head's output is its slice of what that projection reads; `auditor.kit.lm`). Its next tokens are its input
tokens, so no baseline input exists to integrate from: no conductance sweep for it.

Cost: the capture's backward (one per batch), plus the conductance sweep over a subset of the samples.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.analyses.gradients.conductance import SweepResult, SweepSpec, run_sweep
from auditor.kit.lm import LMLayout, lm_layout
from auditor.walk.needs import Needs
from auditor.errors import ConfigError
from auditor.schema.findings import Finding
from auditor.schema.report import Cost, Section
from auditor.subject import Task
from auditor.walk.blocks import Block
from auditor.walk.joins import Join
from auditor.walk.records import split_call


from auditor.analyses.gradients.params import GradientsParams
from auditor.analyses.gradients.findings import DEFAULT_RULES, FINDINGS
from auditor.schema.findings import DefaultRule, Findings
from auditor.analyses.gradients.report import (
    SERIES,
    STREAM_PARTS,
    class_heatmap,
    conductance_figure,
    cut_bars,
    heads_figure,
    join_detail,
    joins_table,
    norm_profile,
    ranked_table,
)


class Gradients(Analysis):
    """Per-module gradient norms and gradient × activation, ranked within cuts; conductance of branches."""

    id: ClassVar[str] = "gradients"
    title: ClassVar[str] = "Gradients and contributions"
    findings: ClassVar[Findings] = FINDINGS
    default_rules: ClassVar[tuple[DefaultRule, ...]] = DEFAULT_RULES
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "causal_lm"})
    params_type: ClassVar[type[BaseModel]] = GradientsParams
    cost_note: ClassVar[str] = ("one backward per batch in the shared capture; a conductance sweep of "
                                "steps + 3 forwards and steps + 1 backwards over up to 64 samples")

    def __init__(self, params: GradientsParams | None = None) -> None:
        self.params: GradientsParams = params or GradientsParams()

    def needs(self, ctx: PlanContext) -> Needs:
        _, heads = ctx.attention_heads
        layout = _projected_heads(ctx)
        return Needs(gradients=frozenset(ctx.tree.names), unit_relevance=heads,
                     input_relevance=frozenset(layer.out_proj for layer in layout.layers) if layout else frozenset())

    def _sweep_spec(self, ctx: PlanContext) -> SweepSpec | None:
        p = self.params
        points = tuple(dict.fromkeys(pt for j in ctx.joins for pt in (j.site, *j.branches)))
        units = frozenset(p.conductance_units)
        unknown = sorted(units - set(ctx.tree.names))
        if unknown:
            raise ConfigError(f"[analyses.gradients] conductance_units names modules the model does not have: "
                              f"{unknown[:5]}")
        if not p.conductance or not (points or units) or ctx.subject.head.target_reads_inputs:
            return None
        embeddings = next((b.name for b in ctx.blocks if b.kind == "embeddings"), None)
        if ctx.subject.inputs.is_text and embeddings is None:
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
        classes = (ctx.subject.labels if ctx.subject.labels is not None else ctx.clean.predictions) \
            if ctx.subject.head.per_class else None
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
            per_head = ctx.capture.unit_relevance[name].reshape(len(ctx.subject), heads, -1).sum(dim=2)
            for h in range(heads):
                module_metrics.setdefault(name, {})[f"head_abs_grad_x_act/{h}"] = float(per_head[:, h].abs().mean())
        layout = _projected_heads(ctx)
        if layout is not None:
            head_modules = head_modules | _add_projected_heads(ctx, layout, module_metrics)
            heads = layout.heads
        findings = [*_no_influence(ctx, ran, grad_norm), *_vanishing(ctx, module_metrics, p)]
        sweep = None
        spec = self._sweep_spec(ctx)
        if spec is not None:
            assert classes is not None  # a sweep runs only for a task with a per-class target
            sweep = run_sweep(ctx.subject, ctx.tree, spec, labels=classes, batch_size=ctx.config.batch_size,
                              progress=ctx.progress)
            _add_conductance(module_metrics, ctx.joins, sweep)
        cuts = _stream_parts(layout, module_metrics, p.top) if layout is not None else \
            _cuts(ctx, module_metrics, heads, head_modules)
        tables = [ranked_table(cuts, module_metrics, p.top)]
        sums = joins_table(ctx.joins, sweep) if sweep is not None else None
        if sums is not None:
            tables.append(sums)
        figures = [f for f in (
            cut_bars(cuts, module_metrics),
            class_heatmap(_by_call(ctx, [b.name for b in ctx.blocks], module_metrics), module_metrics, names),
            norm_profile(ctx, grad_norm),
            conductance_figure(ctx.joins, sweep),
            heads_figure(head_modules, module_metrics, heads),
        ) if f is not None]
        metrics = {"modules_with_gradient": float(sum(1 for n in ran if n in ctx.tree)),
                   "no_influence_modules": float(sum(1 for f in findings if f.id == FINDINGS.id("no_influence"))),
                   "mean_target": float(ctx.capture.targets.mean()) if ctx.capture.targets is not None else math.nan}
        if sweep is not None and sweep.delta is not None:
            metrics["conductance_samples"] = float(len(sweep.samples))
            metrics["mean_target_gain"] = float(sweep.delta.mean())
        summary, shared = _summary(ctx, grad_norm, metrics, layout, sweep, spec)
        details: dict[str, Any] = {"cuts": {k: v for k, v in cuts.items()},
                                   "joins": [join_detail(j) for j in ctx.joins], "not_per_sample": shared}
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics, tables=tables,
                       figures=figures, findings=findings, module_metrics=module_metrics, details=details)


def _summary(ctx: AuditContext, grad_norm: dict[str, torch.Tensor], metrics: dict[str, float],
             layout: LMLayout | None, sweep: SweepResult | None, spec: SweepSpec | None) -> tuple[str, list[str]]:
    """The section's summary: the target and where its gradient was taken, the modules used more than once, the
    residual stream's parts (an LM), the conductance sweep; and the modules whose output the batch shares."""
    reused = [n for n in ctx.capture.calls if n in grad_norm]
    summary = (f"Gradient of the target ({ctx.subject.head.target_phrase(ctx.subject.labels is not None)}) "
               f"at the output of {int(metrics['modules_with_gradient'])} modules, from one backward per batch"
               + (f"; {len(reused)} module{'s' * (len(reused) != 1)} called more than once per forward "
                  f"({', '.join(reused[:3])}{', …' if len(reused) > 3 else ''}) also per call (`<module>@<call>`), "
                  "the module's own numbers summing its calls" if reused else "")
               + ("; the heads and MLPs compared as parts of the residual stream"
                  + (" (its final norm is scale-invariant, so gradient × activation of all the stream's parts sums "
                     "to zero there: a part's number says how it pulls against the others)"
                     if layout.final_norm else "") if layout is not None else "")
               + (f"; conductance of {len(ctx.joins)} residual join{'s' * (len(ctx.joins) != 1)} over "
                  f"{len(sweep.samples)} samples ({spec.n_steps if spec else 0} steps, "
                  f"{'trapezoid rule' if spec is None or spec.rule == 'trapezoid' else 'Captum’s rule'})"
                  if sweep is not None else "") + ". Contributions are compared only within a cut.")
    shared = sorted(ctx.capture.not_per_sample)
    if shared:
        summary += (f" {len(shared)} module{'s' * (len(shared) != 1)} return{'s' * (len(shared) == 1)} one output "
                    f"shared by the whole batch ({', '.join(shared[:3])}{', …' if len(shared) > 3 else ''}), "
                    "which has no per-sample gradient; not shown.")
    return summary, shared


# --- numbers ---------------------------------------------------------------------------------------------

def _projected_heads(ctx: PlanContext) -> LMLayout | None:
    """The layout whose heads are read at their attention output projection's input: a language model's (GPT-2,
    Llama, ...), when no module's output splits into heads (`ctx.attention_heads`, BERT's self-attention)."""
    if ctx.attention_heads[1]:
        return None
    try:
        return lm_layout(ctx.subject.model)
    except ValueError:
        return None


def _add_projected_heads(ctx: AuditContext, layout: LMLayout, module_metrics: dict[str, dict[str, float]]) -> frozenset[str]:
    """Per head, gradient × input of its slice of the output projection (its first-order contribution to the
    target), on the attention module (`head_abs_grad_x_act/<h>`) and under the head's own name
    (`<attention>#head<h>`: `grad_x_act`, `abs_grad_x_act`); returns the attention modules."""
    done = set()
    for i, layer in enumerate(layout.layers):
        relevance = ctx.capture.unit_relevance.get(layer.out_proj)
        if relevance is None or relevance.shape[1] != layout.heads * layout.head_dim:
            continue
        per_head = relevance.double().reshape(relevance.shape[0], layout.heads, layout.head_dim).sum(dim=2)
        for h in range(layout.heads):
            values = per_head[:, h]
            module_metrics.setdefault(layer.attention, {})[f"head_abs_grad_x_act/{h}"] = float(values.abs().mean())
            module_metrics[layout.head_name(i, h)] = {"grad_x_act": float(values.mean()),
                                                      "abs_grad_x_act": float(values.abs().mean())}
        done.add(layer.attention)
    return frozenset(done)


def _per_module(norm: torch.Tensor, gxa: torch.Tensor, classes: torch.Tensor | None, names: list[str]) -> dict[str, float]:
    values = {"grad_norm": float(norm.double().mean()), "grad_x_act": float(gxa.double().mean()),
              "abs_grad_x_act": float(gxa.double().abs().mean())}
    if classes is None:
        return values
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
            findings.append(FINDINGS.finding(
                "no_influence", module=name,
                message=(f"Call {call} of {module} ({ctx.tree.nodes[module].type}) runs, but the decision does not "
                         f"depend on what it returns: its gradient is exactly zero on all {len(ctx.subject)} samples, "
                         "while the module's other calls matter. That call's compute is spent for nothing."),
                evidence={"samples": len(ctx.subject), "call": call}))
            continue
        parent = ctx.tree.nodes[name].parent
        if parent in silent_set:
            continue  # its container is reported
        below = [n for n in silent if n.startswith(f"{name}.")]
        findings.append(FINDINGS.finding(
            "no_influence", module=name,
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
        findings.append(FINDINGS.finding(
            kind, module=group,
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


def _stream_parts(layout: LMLayout, module_metrics: dict[str, dict[str, float]], top: int) -> dict[str, list[str]]:
    """A language model's one cut: every head and MLP writes into the residual stream, which the final norm
    reads. A layer's output is the whole stream so far, not a part of it (under a final LayerNorm, which is
    scale-invariant, the last layer's gradient × activation is zero by construction), so layers are not ranked;
    the `top` heads and MLPs by |gradient × activation| are."""
    parts = [*layout.head_names(), *(layer.mlp for layer in layout.layers if layer.mlp)]
    present = [m for m in parts if m in module_metrics and "abs_grad_x_act" in module_metrics[m]]
    ranked = sorted(present, key=lambda m: -module_metrics[m]["abs_grad_x_act"])[:top]
    return {STREAM_PARTS: ranked} if len(ranked) >= 2 else {}


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

__all__ = ["Gradients"]
