"""One run of the features analysis: units chosen, examples read from the capture, and the section assembled
from the image (`images.py`) and text (`text.py`) parts, with the attention heads drawn."""


from __future__ import annotations

import math
from typing import Any

import torch

from auditor.engine.analysis import Analysis, PlanContext
from auditor.errors import ConfigError
import auditor.analyses.features.gallery as gallery
from auditor.analyses.features.attention import attention_hooks, eager_attention, head_stats
from auditor.analyses.features.images import ImageRun
from auditor.analyses.features.text import TextRun, _shared_lists
from auditor.schema.report import Figure, Section
from auditor.subject.inputs import ImageInputs


from auditor.analyses.features.params import UnitView
from auditor.analyses.features.report import unit_detail, units_table, weak_optimizations


class Run(ImageRun, TextRun):
    """One run: the image and text parts over the shared base."""

    # --- choosing units -----------------------------------------------------------------------------

    def choose(self, name: str) -> list[UnitView]:
        capture = self.ctx.capture
        topk = capture.top_k.get(name)
        if topk is None or topk.values is None or topk.samples is None or topk.positions is None:
            return []
        relevance = capture.unit_relevance.get(name)
        units = topk.values.shape[0]
        if relevance is not None and relevance.shape[1] == units:
            score = relevance.double().abs().mean(dim=0)
        elif name in capture.pooled and capture.pooled[name].shape[1] == units:
            score = capture.pooled[name].double().var(dim=0)
        else:
            score = topk.values[:, 0].double()
        named = self.p.units.get(name)
        if named:
            bad = [u for u in named if not 0 <= u < units]
            if bad:
                raise ConfigError(f"[analyses.features] units {bad} of {name} do not exist (it has {units})")
            picked = list(named)
        else:
            order = torch.argsort(score, descending=True, stable=True).tolist()
            alive = [u for u in order if float(topk.values[u, 0]) > 0] or order
            picked = alive[:self.p.units_per_module]
        views = []
        for u in picked:
            finite = torch.isfinite(topk.values[u])
            shown = [(int(s), float(v), int(pos)) for s, v, pos, ok in
                     zip(topk.samples[u], topk.values[u], topk.positions[u], finite, strict=True) if ok]
            view = UnitView(module=name, unit=int(u), relevance=float(score[u]), max_real=shown[0][1] if shown else math.nan,
                            by_activation=shown[:self.p.examples], peaks=shown)
            view.real_objective = view.max_real
            pooled = capture.pooled.get(name)
            if not self.inputs.is_text and self.p.objective == "channel" and pooled is not None and pooled.shape[1] == units:
                view.real_objective = float(pooled[:, u].max())
            if relevance is not None and relevance.shape[1] == units:
                r = relevance[:, u]
                top = torch.argsort(r, descending=True, stable=True)[:self.p.examples]
                view.by_relevance = [(int(i), float(r[i])) for i in top]
            views.append(view)
        return views

    # --- the section ----------------------------------------------------------------------------------

    def section(self, analysis: Analysis, modules: list[str]) -> Section:
        p, ctx = self.p, self.ctx
        # A module called more than once per forward is shown per call (`pool@2`: its second call), each call
        # with its own units, top examples and optimized inputs.
        names = [k for n in modules for k in (ctx.capture.call_keys(n) or [n]) if k in ctx.capture.top_k]
        chosen = {name: self.choose(name) for name in names}
        chosen = {k: v for k, v in chosen.items() if v}
        figures: list[Figure] = []
        details: dict[str, Any] = {"modules": [], "text_units": [], "attention": None}
        if self.inputs.is_text:
            for name, views in chosen.items():
                if self.causal:
                    self._neurons(name, views)
                if p.token_search and p.search_units:
                    self._search(name, views[:p.search_units])
                details["text_units"].append({"module": name, "units": _shared_lists([self._text_unit(v) for v in views])})
        elif isinstance(self.inputs, ImageInputs):
            rng = self._input_range()
            for name, views in chosen.items():
                images = self._optimize(name, views, rng)
                figures.append(self._gallery(name, views, images, rng))
            if p.feature_maps:
                figures += self._feature_maps(names, rng)
        else:
            rng = self._input_range()
            for name, views in chosen.items():
                self._optimize(name, views, rng)
        if p.attention:
            attention = self._attention()
            if attention is not None:
                details["attention"], attention_figures = attention
                figures += attention_figures
        module_metrics = _module_metrics(chosen, details)
        all_views = [v for views in chosen.values() for v in views]
        findings = weak_optimizations(all_views)
        searched = [v for v in all_views if v.optimized_objective is not None]
        metrics = {"units_shown": float(len(all_views)), "modules_shown": float(len(chosen))}
        if searched:
            metrics["units_beating_real"] = float(sum(1 for v in searched if v.optimized_objective is not None
                                                      and v.optimized_objective >= v.real_objective))
        if self.inputs.is_text:
            at = " at its last token (a causal unit sees the tokens before it only)" if self.causal else ""
            how = (f"for {len(searched)} of them a token search ({p.search_length} tokens) that maximizes the unit{at}"
                   if searched else "no token search")
            if self.causal:
                how += "; per neuron the tokens it peaks on and the output tokens its output row promotes directly"
        else:
            how = "an input optimized to maximize each"
        target = "the mean log-probability of the audited next tokens" if self.causal else "the decision"
        summary = (f"{len(all_views)} units of {len(chosen)} modules, chosen by "
                   + (f"mean |gradient × activation| toward {target}" if ctx.capture.unit_relevance
                      else "variance over the data")
                   + f": their top {p.examples} examples by activation (from the capture's top-{p.top_k})"
                   + (" and by relevance" if ctx.capture.unit_relevance else "")
                   + f", and {how}, beside the best real sample.")
        return Section(id=analysis.id, title=analysis.title, summary=summary, metrics=metrics,
                       tables=[units_table(all_views, text=self.inputs.is_text)], figures=figures, findings=findings,
                       module_metrics=module_metrics, details=details)

    # --- attention -----------------------------------------------------------------------------------------

    def _attention(self) -> tuple[dict[str, Any], list[Figure]] | None:
        heads, _ = self.ctx.attention_heads
        names = attention_modules(self.ctx)
        if not heads or not names:
            return None
        modules = {n: self.ctx.tree.get(n) for n in sorted(names, key=self.ctx.tree.names.index)}
        n = min(self.p.attention_samples, len(self.subject))
        indices = list(range(n))
        bs = self.ctx.config.batch_size
        per_layer: dict[str, list[tuple[torch.Tensor, torch.Tensor | None]]] = {k: [] for k in modules}
        patterns: dict[str, torch.Tensor] = {}
        with eager_attention(self.subject.model), attention_hooks(modules) as kept, torch.no_grad():
            for start in range(0, n, bs):
                chunk = indices[start:start + bs]
                inputs = self._inputs(chunk)
                kept.clear()
                self._forward(inputs)
                mask = inputs.get("attention_mask")
                for name in modules:
                    if name in kept:
                        per_layer[name].append((kept[name], mask.cpu() if mask is not None else None))
                        if start == 0:
                            patterns[name] = kept[name][:self.p.attention_patterns]
        if not any(per_layer.values()):
            return None
        layers = []
        for name, parts in per_layer.items():
            if not parts:
                continue
            stats = [head_stats(a, m) for a, m in parts]
            weights = [a.shape[0] for a, _ in parts]
            total = sum(weights)

            def avg(values: list[list[float]], weights: list[int] = weights, total: int = total) -> list[float]:
                return [round(sum(w * v[h] for w, v in zip(weights, values, strict=True)) / total, 6)
                        for h in range(len(values[0]))]

            layers.append({"module": name, "distance": avg([s.distance for s in stats]),
                           "entropy": avg([s.entropy for s in stats]),
                           "first_token": avg([s.first_token for s in stats])})
        figures = [gallery.head_stats_figure(layers)]
        if patterns:
            sample_inputs = self._inputs(indices[:self.p.attention_patterns])
            labels = None
            if self.inputs.is_text:
                labels = [self._tokens(i) for i in indices[:self.p.attention_patterns]]
            mask = sample_inputs.get("attention_mask")
            for k in range(min(self.p.attention_patterns, n)):
                length = int(mask[k].sum()) if mask is not None else None
                figures.append(gallery.attention_patterns(
                    {name: a[k] for name, a in patterns.items() if k < a.shape[0]}, k=indices[k], length=length,
                    tokens=labels[k] if labels else None))
        return {"samples": n, "heads": heads, "layers": layers}, figures


# --- small helpers --------------------------------------------------------------------------------------

def attention_modules(ctx: PlanContext) -> list[str]:
    """The innermost modules whose class is an attention (BertSelfAttention inside BertAttention; ViTAttention in
    transformers 5, which has no self-attention child)."""
    found = [n for n, m in ctx.tree.modules() if type(m).__name__.endswith("Attention")]
    return [n for n in found if not any(other.startswith(f"{n}.") for other in found)]


def _module_metrics(chosen: dict[str, list[UnitView]], details: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per module, the largest real and optimized activation of its units and its heads' attention statistics;
    the units' details are added to `details["modules"]`."""
    module_metrics: dict[str, dict[str, float]] = {}
    for name, views in chosen.items():
        values = {"max_real_activation": max(v.real_objective for v in views)}
        reached = [v.optimized_objective for v in views if v.optimized_objective is not None]
        if reached:
            values["max_optimized_activation"] = max(reached)
        module_metrics[name] = values
        details["modules"].append({"module": name, "units": [unit_detail(v) for v in views]})
    if details["attention"] is not None:
        for layer in details["attention"]["layers"]:
            metrics = module_metrics.setdefault(layer["module"], {})
            for h, (d, e) in enumerate(zip(layer["distance"], layer["entropy"], strict=True)):
                metrics[f"attention_distance/{h}"] = d
                metrics[f"attention_entropy/{h}"] = e
    return module_metrics
