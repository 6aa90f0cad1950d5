"""Ablation of a causal language model's layers, attention modules, heads, MLPs and (of chosen layers) MLP neurons,
measured as the increase of the next-token loss, with a bootstrap interval over the audit texts.

Each target's output is replaced by its mean over the audited tokens of the audit data (mean ablation; Wang
et al., 2022, "Interpretability in the Wild") or by the same module's output on another text of the batch
(resample ablation; Chan et al., 2022, "Causal scrubbing"). A layer is ablated by its two branches (attention
and MLP, what it adds to the residual stream), a head by its slice of the input to the attention output
projection (Michel et al., 2019), a neuron by its activation. The increase is also split by token kind: tokens that already occurred earlier
in their text (a repeat the context predicts: what induction heads serve) and first occurrences.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from auditor.analyses.lm_ablation.findings import FINDINGS
from auditor.analyses.lm_ablation.params import LMAblationParams
from auditor.analyses.lm_ablation.targets import LMTarget, Means, fill_slice, lm_targets, neuron_layers
from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.engine.passes import PatchedPass
from auditor.kit.lm import (
    LMLayout,
    audited_positions,
    bootstrap_interval,
    first_tensor,
    hooks,
    lm_layout,
    replace_first,
    seen_before,
    text_losses,
    value_slice,
)
from auditor.schema.findings import Finding, Findings
from auditor.schema.report import Cost, Section, Table
from auditor.subject import Task
from auditor.walk.patch import Patch


class LMAblation(Analysis):
    """Loss increase when each layer, attention module, head or MLP of a language model is ablated."""

    id: ClassVar[str] = "lm_ablation"
    title: ClassVar[str] = "Ablation (language model)"
    findings: ClassVar[Findings] = FINDINGS
    modalities = frozenset({"text"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"causal_lm"})
    params_type: ClassVar[type[BaseModel]] = LMAblationParams
    cost_note: ClassVar[str] = ("one recording pass, then one pass per ablated layer, attention module, head and MLP; "
                                "with mean ablation each runs only what follows the ablated target (cached "
                                "prefixes)")

    def __init__(self, params: LMAblationParams | None = None) -> None:
        self.params: LMAblationParams = params or LMAblationParams()

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None:
            try:
                lm_layout(ctx.subject.model)
            except ValueError as err:
                return f"the model's layers cannot be read: {err}"
        return reason

    def cost(self, ctx: PlanContext) -> Cost:
        try:
            layout = lm_layout(ctx.subject.model)
        except ValueError:  # not a language model: nothing to ablate (the plan does not run it)
            return Cost(note=self.cost_note)
        n = len(lm_targets(layout, self.params, neuron_layers(ctx.subject.model, layout, self.params, ctx)))
        return Cost(forwards=float(n + 1), note=f"{n} ablation passes and 1 recording pass")

    def run(self, ctx: AuditContext) -> Section:
        p = self.params
        subject, model = ctx.subject, ctx.subject.model
        layout = lm_layout(model)
        targets = lm_targets(layout, p, neuron_layers(model, layout, p, ctx))
        width = ctx.capture.scores.shape[1]
        means = self._means(ctx, layout, targets) if p.mode == "mean" else None
        clean = ctx.capture.scores.double()
        patched = {t.name: torch.full_like(clean, float("nan")) for t in targets}
        repeated = torch.zeros_like(clean, dtype=torch.bool)
        for batch in subject.batches(ctx.config.batch_size):
            repeated[batch.start:batch.stop] = seen_before(batch.inputs["input_ids"], width).cpu()
        cached, cache = self._cached(ctx, layout, targets, means) if means is not None and p.cache_mib > 0 \
            else ({}, None)
        for name, scores in cached.items():
            patched[name] = scores.double()
        rest = [t for t in targets if t.name not in cached]
        if rest:
            with torch.no_grad():
                batches = list(subject.batches(ctx.config.batch_size))
                for batch in ctx.progress.track(batches, total=len(batches), description="ablating (language model)"):
                    donors = self._donors(model, subject, batch.inputs, rest) if means is None else None
                    for target in rest:
                        with hooks(model, **self._patches(target, layout, means, donors)):
                            scores = subject.adapter.forward(model, batch.inputs)
                        patched[target.name][batch.start:batch.stop] = scores.double().cpu()
        return self._section(ctx, layout, targets, clean, patched, repeated, cache)

    def _cached(self, ctx: AuditContext, layout: LMLayout, targets: list[LMTarget],
                means: Means) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
        """Mean ablation as the engine's patched passes (`ctx.patched_scores`: each runs what follows the ablated
        target, on cached prefixes, several stacked in one forward): a layer, attention module or MLP by its
        outputs replaced with their means, a head by its values replaced with its output's mean (`value_slice`).
        Per target so run, its per-token scores (a head whose values are not one module's slice is left out), and
        what the run cost."""
        p = self.params
        passes: list[PatchedPass] = []
        names: list[str] = []
        for target in targets:
            patches: dict[str, Patch] = {n: Patch(output=means.mean(n).float()) for n in target.forward}
            if target.head is not None:
                where = value_slice(ctx.subject.model, layout, target.layer, target.head[1])
                if where is None:
                    continue
                module, part = where
                d = layout.head_dim
                fill = means.mean(target.head[0])[target.head[1] * d:(target.head[1] + 1) * d].float()
                patches[module] = Patch(output=partial(fill_slice, part=part, fill=fill))
            if target.unit is not None:
                act, u = target.unit
                patches[act] = Patch(output=partial(fill_slice, part=slice(u, u + 1), fill=means.mean(act)[u:u + 1]
                                                    .float()))
            passes.append(PatchedPass(patches=patches, label=f"ablating {target.name}"))
            names.append(target.name)
        if not passes:
            return {}, None
        batch = max(ctx.config.batch_size, 1)
        largest = max((t.bytes_per_sample for t in ctx.traced.values() if t.calls), default=0.0)
        stack = max(1, min(p.stack, int((p.stack_mib << 20) // max(largest * batch, 1.0))))
        scores, routes, run = ctx.patched_scores(passes, cache_bytes=p.cache_mib << 20, stack=stack)
        cost = {"targets": len(passes), "full_forward": sum(1 for r in routes if r is None or r.full_forward),
                "forwards": run.forwards if run else len(passes), "stacked": run.stacked if run else 0,
                "seconds": round(run.seconds, 3) if run else None}
        return dict(zip(names, scores, strict=True)), cost

    def _means(self, ctx: AuditContext, layout: LMLayout, targets: list[LMTarget]) -> Means:
        """One recording pass: the mean output of every ablated module (and input of every output projection, and
        output of every MLP activation whose neurons are ablated)."""
        means = Means()
        mask_now: list[torch.Tensor] = []

        def out_hook(name: str) -> Callable[..., None]:
            return lambda m, a, o: means.add(name, first_tensor(o), mask_now[0])

        def in_hook(name: str) -> Callable[..., None]:
            return lambda m, a: means.add(name, a[0], mask_now[0])

        acts = sorted({t.unit[0] for t in targets if t.unit is not None})
        forward = [(n, out_hook(n)) for part in layout.layers for n in (part.attention, part.mlp) if n]
        forward += [(n, out_hook(n)) for n in acts]
        pre = [(part.out_proj, in_hook(part.out_proj)) for part in layout.layers]
        subject = ctx.subject
        with torch.no_grad(), hooks(subject.model, forward=forward, pre=pre):
            for batch in subject.batches(ctx.config.batch_size):
                mask_now[:] = [audited_positions(batch.inputs)]
                subject.adapter.call(subject.model, batch.inputs)
        return means

    @staticmethod
    def _donors(model: nn.Module, subject: Any, inputs: dict[str, torch.Tensor],
                targets: list[LMTarget]) -> dict[str, torch.Tensor]:
        """Resample ablation: every ablated module's output on the batch, rolled by one text (each text gets
        another text's activation at the same positions)."""
        kept: dict[str, torch.Tensor] = {}
        names = sorted({n for t in targets for n in t.forward} | {t.unit[0] for t in targets if t.unit is not None})
        projections = sorted({t.head[0] for t in targets if t.head})
        forward = [(n, lambda m, a, o, n=n: kept.__setitem__(n, first_tensor(o).detach().roll(1, dims=0)))
                   for n in names]
        pre = [(n, lambda m, a, n=n: kept.__setitem__(n, a[0].detach().roll(1, dims=0))) for n in projections]
        with hooks(model, forward=forward, pre=pre):
            subject.adapter.call(model, inputs)
        return kept

    @staticmethod
    def _patches(target: LMTarget, layout: LMLayout, means: Means | None,
                 donors: dict[str, torch.Tensor] | None) -> dict[str, list[tuple[str, Callable[..., Any]]]]:
        def value(name: str, like: torch.Tensor) -> torch.Tensor:
            if means is not None:
                return means.mean(name).to(like.dtype).expand_as(like)
            assert donors is not None
            return donors[name]

        forward = [(n, lambda m, a, o, n=n: replace_first(o, value(n, first_tensor(o)))) for n in target.forward]
        pre = []
        if target.head is not None:
            proj, h = target.head
            part = slice(h * layout.head_dim, (h + 1) * layout.head_dim)

            def replace(m: nn.Module, a: tuple[Any, ...], proj: str = proj) -> tuple[Any, ...]:
                x = a[0].clone()
                x[..., part] = value(proj, a[0])[..., part]
                return (x, *a[1:])
            pre.append((proj, replace))
        if target.unit is not None:
            act, u = target.unit

            def neuron(m: nn.Module, a: tuple[Any, ...], o: Any, act: str = act, u: int = u) -> Any:
                out = first_tensor(o).clone()
                out[..., u] = value(act, first_tensor(o))[..., u]
                return replace_first(o, out)
            forward.append((act, neuron))
        return {"forward": forward, "pre": pre}

    def _section(self, ctx: AuditContext, layout: LMLayout, targets: list[LMTarget], clean: torch.Tensor,
                 patched: dict[str, torch.Tensor], repeated: torch.Tensor, cache: dict[str, Any] | None) -> Section:
        p = self.params
        base = text_losses(ctx.subject, clean)
        audited = ~torch.isnan(clean)
        texts = int((~torch.isnan(base)).sum())
        powered = texts >= p.min_texts
        module_metrics: dict[str, dict[str, float]] = {}
        rows: list[list[Any]] = []
        for i, target in enumerate(targets):
            after = patched[target.name]
            increase = (text_losses(ctx.subject, after) - base).numpy()
            low, high = bootstrap_interval(increase, seed=ctx.config.seed + i)
            delta = after - clean
            rep = float(delta[audited & repeated].mean()) if bool((audited & repeated).any()) else float("nan")
            first = float(delta[audited & ~repeated].mean()) if bool((audited & ~repeated).any()) else float("nan")
            mean = float(np.nanmean(increase))
            module_metrics[target.name] = {"loss_increase": mean, "loss_increase_low": low, "loss_increase_high": high,
                                           "loss_increase_repeated": rep, "loss_increase_first": first}
            rows.append([target.name, target.kind, round(mean, 4), round(low, 4), round(high, 4), round(rep, 4),
                         round(first, 4)])
        neuron_rows = sorted((r for r in rows if r[1] == "neuron"), key=lambda r: -float(r[2]))
        rows = [r for r in rows if r[1] != "neuron"]
        findings = self._findings(module_metrics, targets, texts, powered)
        ranked = sorted(module_metrics, key=lambda n: -module_metrics[n]["loss_increase"])
        top = ranked[0] if ranked else ""
        summary = (f"{len(targets)} targets {p.mode}-ablated on {texts} texts; the largest loss increase: {top} "
                   f"(+{module_metrics[top]['loss_increase']:.3f} nats)." if top else "Nothing to ablate.")
        table = Table(id="lm_ablation", title="Loss increase when ablated (nats per token)",
                      columns=["target", "kind", "increase", "95% low", "95% high", "on repeated tokens",
                               "on first occurrences"], rows=rows,
                      caption="Increase of each text's mean next-token loss, averaged over texts, with a bootstrap "
                              "interval over texts; the last two columns average over tokens that did / did not "
                              "already occur earlier in their text.")
        tables = [table]
        if neuron_rows and p.neurons_shown:
            tables.append(Table(id="lm_ablation.neurons", title="MLP neurons whose ablation raises the loss most",
                                columns=table.columns, rows=neuron_rows[:p.neurons_shown],
                                caption=f"{len(neuron_rows)} neurons of layers {', '.join(map(str, p.neurons))}, "
                                        "each ablated alone; every neuron's numbers are in the section's "
                                        "`module_metrics`."))
        metrics = {"targets": float(len(targets)), "texts": float(texts),
                   "max_loss_increase": max((m["loss_increase"] for m in module_metrics.values()), default=0.0)}
        return Section(id=self.id, title=self.title, summary=summary, metrics=metrics, tables=tables,
                       findings=findings, module_metrics=module_metrics,
                       details={"mode": p.mode, "clean_loss": float(np.nanmean(base.numpy())), "cache": cache,
                                "unused": p.unused})

    def _findings(self, mm: dict[str, dict[str, float]], targets: list[LMTarget], texts: int,
                  powered: bool) -> list[Finding]:
        p = self.params
        if not powered:
            return [FINDINGS.finding("inconclusive",
                            message=(f"Only {texts} audit texts: too few for intervals that can tell an ablation "
                                     f"that matters from one that does not (at least {p.min_texts}); the numbers "
                                     "are shown but nothing is concluded from them."),
                            evidence={"texts": texts, "min_texts": p.min_texts})]
        findings = []
        critical = sorted((t.name for t in targets if mm[t.name]["loss_increase_low"] >= p.critical),
                          key=lambda n: -mm[n]["loss_increase"])
        if critical:
            findings.append(FINDINGS.finding(
                "critical", module=critical[0],
                message=("Ablating " + ", ".join(f"{n} (+{mm[n]['loss_increase']:.2f})" for n in critical[:8])
                         + (f" and {len(critical) - 8} more" if len(critical) > 8 else "")
                         + f" raises the next-token loss by at least {p.critical:g} nats per token (interval low end)."),
                evidence={"targets": ", ".join(critical), "count": len(critical), "threshold": p.critical}))
        in_context = sorted((t.name for t in targets if mm[t.name]["loss_increase_repeated"] >= p.in_context
                             and mm[t.name]["loss_increase_first"] < mm[t.name]["loss_increase_repeated"] / 5),
                            key=lambda n: -mm[n]["loss_increase_repeated"])
        if in_context:
            findings.append(FINDINGS.finding(
                "in_context", module=in_context[0],
                message=("Ablating " + ", ".join(f"{n} (+{mm[n]['loss_increase_repeated']:.2f} on repeated tokens, "
                                                 f"{mm[n]['loss_increase_first']:+.2f} on first occurrences)"
                                                 for n in in_context[:6])
                         + " raises the loss on tokens that already occurred in the text, and not on the others: "
                           "they serve in-context copying."),
                evidence={"targets": ", ".join(in_context), "threshold": p.in_context}))
        unused = [t.name for t in targets if -p.unused <= mm[t.name]["loss_increase_low"]
                  and mm[t.name]["loss_increase_high"] <= p.unused]
        if unused:
            findings.append(FINDINGS.finding(
                "unused", module=unused[0],
                message=(f"{len(unused)} targets change the loss by less than {p.unused:g} nats when ablated "
                         f"(interval within +/-{p.unused:g}): " + ", ".join(unused[:8])
                         + (" ..." if len(unused) > 8 else "") + "."),
                evidence={"targets": ", ".join(unused), "count": len(unused), "threshold": p.unused}))
        return findings
