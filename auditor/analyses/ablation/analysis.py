"""Ablation: what breaks when a module, an attention head, a unit or a share of a layer's kernels is removed.

Each module at the chosen granularity has its output replaced by its per-unit mean over the audit data
(mean ablation, padding excluded: less off-distribution than zeros; Meyes et al., 2019, "Ablation Studies
in Artificial Neural Networks"; Wang et al., 2022, "Interpretability in the Wild" for mean ablation) or by
zeros, and the model is scored again: accuracy, loss, per-class recall and the KL divergence of its
predictions from the intact model's, each drop with a paired bootstrap interval over the samples (Efron
& Tibshirani, 1993). A residual block's output is the whole stream, so replacing it would collapse
everything after it; the block is ablated by its branches (what it adds to the stream) instead, also where
an activation follows the sum (a ResNet block's `relu(bn2(...) + shortcut(x))`), its shortcut kept. Its
module_metrics are then its branches' numbers, and `ablation_branches` says how many were ablated.
Attention heads are removed one at a time by replacing their slice of the input to the attention output
projection (Michel et al., 2019, "Are Sixteen Heads Really Better than One?"). Single units of chosen
layers are mean-ablated alone, and each convolution loses 10-90% of its kernels, smallest L1 norm first
and at random (Li et al., 2017, "Pruning Filters for Efficient ConvNets"), zeroed after any BatchNorm.

Bare encoders have no accuracy: there the change is 1 - cosine similarity of the pooled embedding to the
intact one. Without labels, accuracy is agreement with the intact model's predictions.

Speed: the passes run on cached prefixes (`auditor.engine.prefix`): what precedes the ablated module is
recorded once and not run again.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from auditor.analyses.ablation.report import figures, tables
from auditor.kit.removal import (
    PruneStep,
    Selection,
    Target,
    default_unit_layers,
    head_targets,
    module_targets,
    prune_layers,
    prune_steps,
    select_modules,
    unit_targets,
)
from auditor.analyses.ablation.findings import findings_of, metrics_of, summary_of
from auditor.analyses.ablation.metrics import prunable_fraction, prune_key, pruning_curves, reference, score_rows
from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.walk.needs import Needs
from auditor.engine.passes import PatchedPass
from auditor.engine.prefix_plan import PassRoute, estimate_shares
from auditor.engine.trace import Traced
from auditor.errors import ConfigError
from auditor.schema.report import Cost, Section
from auditor.walk.records import split_call


from auditor.analyses.ablation.params import AblationParams
from auditor.analyses.ablation.findings import DEFAULT_RULES, FINDINGS
from auditor.schema.findings import DefaultRule, Findings


class ModuleAblation(Analysis):
    """Removes each module, head, unit and share of kernels, and measures what breaks, overall and per class."""

    id: ClassVar[str] = "ablation"
    title: ClassVar[str] = "Ablation"
    findings: ClassVar[Findings] = FINDINGS
    default_rules: ClassVar[tuple[DefaultRule, ...]] = DEFAULT_RULES
    params_type: ClassVar[type[BaseModel]] = AblationParams
    cost_note: ClassVar[str] = ("one patched pass per ablated module, head, unit and pruning step, plus one "
                                "recording pass; most run only the part of the network after what they ablate")

    def __init__(self, params: AblationParams | None = None) -> None:
        self.params: AblationParams = params or AblationParams()

    def _unit_layer_names(self, ctx: PlanContext, traced: dict[str, Traced]) -> list[str]:
        p = self.params
        if p.unit_layers == "none":
            return []
        if p.unit_layers == "default":
            return default_unit_layers(ctx, traced)
        unknown = sorted(n for n in p.unit_layers if n not in ctx.tree and split_call(n)[0] not in ctx.tree)
        if unknown:
            raise ConfigError(f"[analyses.ablation] unit_layers names modules the model does not have: {unknown[:5]}")
        return list(p.unit_layers)

    def _wanted(self, ctx: PlanContext, traced: dict[str, Traced]) -> tuple[list[str], list[str], list[str]]:
        """(modules, head modules, unit layers) whose unit means the ablation needs."""
        p = self.params
        modules = select_modules(ctx, traced, p.modules)
        branches = [b for n in modules for j in ctx.joins if j.block == n for b in (s.module for s in j.branches)]
        heads = sorted(ctx.attention_heads[1]) if p.heads else []
        return [*modules, *branches], heads, self._unit_layer_names(ctx, traced)

    def needs(self, ctx: PlanContext) -> Needs:
        if self.params.mode == "zero":
            return Needs()
        modules, heads, units = self._wanted(ctx, ctx.traced)
        # a call of a reused module (`pool@2`) is recorded with its module: the capture keeps every call's means
        return Needs(unit_means=frozenset([*modules, *heads, *(n if n in ctx.tree else split_call(n)[0] for n in units)]))

    def select(self, ctx: PlanContext, traced: dict[str, Traced], means: dict[str, torch.Tensor]) -> Selection:
        """Everything this audit ablates, as patches."""
        p = self.params
        selection = Selection()
        module_targets(ctx, traced, means, modules=p.modules, mode=p.mode, selection=selection)
        if p.heads:
            count, head_modules = ctx.attention_heads
            if count >= 2:
                head_targets(traced, means, heads=count, mode=p.mode, selection=selection,
                             head_modules=sorted(head_modules, key=lambda n: traced[n].start if n in traced else 0))
        unit_targets(traced, means, self._unit_layer_names(ctx, traced), mode=p.mode, max_units=p.max_units,
                     selection=selection)
        if p.prune:
            layers = prune_layers(ctx, traced, patterns=p.prune_layers, linear=p.prune_linear)
            selection.prune = prune_steps(ctx, traced, layers, fractions=p.prune_fractions, seed=ctx.config.seed)
        return selection

    def cost(self, ctx: PlanContext) -> Cost:
        selection = self.select(ctx, ctx.traced, {})
        distinct = {t.key: t.patches for t in selection.targets} | {s.key: s.patches for s in selection.prune}
        passes = len(distinct)
        recording = 1 if passes and self.params.cache_mib else 0
        shares = estimate_shares(list(distinct.values()), ctx.traced, ctx.module_seconds) if recording \
            else [1.0] * passes
        return Cost(forwards=float(passes + recording), forward_equivalents=sum(shares) + recording,
                    note=f"{passes} patched passes ({len(selection.targets)} ablations, {len(selection.prune)} "
                         f"pruning steps) and {recording} recording pass; most run only the part of the network "
                         "after what they ablate")

    def run(self, ctx: AuditContext) -> Section:
        p = self.params
        traced = ctx.traced
        selection = self.select(ctx, traced, ctx.capture.unit_means)
        passes: list[PatchedPass] = []
        index: dict[tuple[object, ...], int] = {}
        for key, patches, label in [*((t.key, t.patches, f"ablating {t.name}") for t in selection.targets),
                                    *((s.key, s.patches, f"pruning {s.layer}") for s in selection.prune)]:
            if key not in index:
                index[key] = len(passes)
                passes.append(PatchedPass(patches=patches, label=label))
        batch = max(ctx.config.batch_size, 1)
        largest = max((t.bytes_per_sample for t in traced.values() if t.calls), default=0.0)
        by_memory = int((p.stack_mib << 20) // max(largest * batch, 1.0))
        stack = max(1, min(p.stack, p.stack_rows // batch, by_memory))
        scores, routes, run = ctx.patched_scores(passes, cache_bytes=p.cache_mib << 20, stack=stack)
        ref = reference(ctx, p)
        rows = score_rows(ref, selection.targets, [scores[index[t.key]] for t in selection.targets],
                          [routes[index[t.key]] for t in selection.targets])
        prune_rows = score_rows(ref, [_prune_target(s) for s in selection.prune],
                                [scores[index[s.key]] for s in selection.prune], [None] * len(selection.prune))
        curves = pruning_curves(selection.prune, prune_rows, ref)
        module_metrics: dict[str, dict[str, float]] = {}
        for row in rows:
            values = module_metrics.setdefault(row.target.name, {})
            values.update(row.metrics(ref.embedding))
            if row.target.branches:  # the block's numbers are its branches' (named in details["branches"])
                values["ablation_branches"] = float(len(row.target.branches))
            if row.target.calls > 1 and row.target.kind != "unit":  # which calls of a reused module were ablated
                values["ablation_calls"] = 1.0 if row.target.call is not None else float(row.target.calls)
        for layer, curve in curves.items():
            values = module_metrics.setdefault(layer, {})
            for method, points in curve.items():
                for fraction, value in points:
                    values[f"{prune_key(ref)}_{method}/{round(fraction * 100)}"] = value
            values["prunable_fraction"] = prunable_fraction(curve.get("l1", []), ref, p.prune_tolerance)
        findings, counts = findings_of(ctx, ref, rows, curves, p)
        metrics = metrics_of(ref, rows, curves, counts, len(passes), routes)
        summary = summary_of(ctx, ref, selection, rows, routes, run, p)
        details: dict[str, Any] = {
            "mode": p.mode,
            "branches": {r.target.name: list(r.target.branches) for r in rows if r.target.branches},
            "full_forward": {r.target.name: r.route.full_forward for r in rows
                             if r.route is not None and r.route.full_forward},
            "skipped": selection.skipped, "unit_layers": selection.unit_layers,
            "truncated_units": selection.truncated_units,
            "cache": {"modules": len(run.cached), "bytes": sum(run.cached.values()), "budget_bytes": run.budget_bytes,
                      "evicted": run.evicted, "record_seconds": round(run.record_seconds, 3),
                      "seconds": round(run.seconds, 3), "stacked": run.stacked, "forwards": run.forwards,
                      "forward_share": _forward_share(routes)} if run else None,
        }
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics,
                       tables=tables(ref, rows, selection, curves, p), figures=figures(ref, rows, selection, curves, p),
                       findings=findings, module_metrics=module_metrics, details=details)


def _forward_share(routes: list[PassRoute | None]) -> float | None:
    """The mean estimated share of a full forward the passes ran (from the capture's per-module times)."""
    shares = [1.0 - r.skipped for r in routes if r is not None and r.skipped is not None]
    return round(sum(shares) / len(shares), 4) if shares else None


def _prune_target(step: PruneStep) -> Target:
    return Target(name=f"{step.layer}@{step.method}{step.removed}", kind="module", patches=step.patches,
                  key=step.key, replaced="zeros", module=step.layer)


__all__ = ["ModuleAblation"]
