"""Feature visualization: what a unit responds to, shown rather than described.

- Top-activating examples of each chosen unit, from the shared capture's per-unit top-k (no pass of its
  own): the samples, or for a conv unit the patch its receptive field covers, where it peaks. Beside them
  the top examples by relevance, the samples where the unit's gradient × activation toward the decision
  is largest (Achtibat et al., 2023, "From attribution maps to human-understandable explanations through
  Concept Relevance Propagation": relevance maximization). What excites a unit and what the model uses it
  for can differ.
- Activation maximization (Erhan et al., 2009; Olah et al., 2017, "Feature Visualization"): for images, an
  input optimized to excite the unit (`auditor.analyses.features.optim`: Fourier-parameterized, decorrelated,
  transformation-robust, in the valid range); for text, a gradient-guided token search (HotFlip, GCG:
  `auditor.analyses.features.tokens`). Reported beside the largest activation any real sample gave.
- Feature maps of a few samples for each convolutional module, the most active channels upsampled over
  the input.
- Attention of Hugging Face transformers (`auditor.analyses.features.attention`): head patterns of a few samples,
  and per head its average attention distance and entropy (Clark et al., 2019, "What Does BERT Look At?").

- Causal language models (`auditor.analyses.features.neurons`): the MLP neurons of evenly spaced layers, each with
  its top examples (the tokens before its peak: all a causal unit sees), the tokens it fires on, the output tokens
  its output row promotes directly through the final norm and the unembedding, and a token search scored at the
  searched sequence's last position.

Units are chosen after the capture: the ones that matter most by mean |gradient × activation| toward the
decision (a language model's: the mean log-probability of the audited next tokens), else (no decision to
differentiate) the most variable ones, unless `[analyses.features]` names them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.walk.needs import Needs
from auditor.errors import ConfigError
from auditor.schema.report import Cost, Section
from auditor.subject import Task
from auditor.walk.records import split_call


from auditor.analyses.features.params import FeaturesParams
from auditor.analyses.features.run import Run, attention_modules
from auditor.analyses.features.findings import FINDINGS
from auditor.analyses.features.neurons import neuron_modules
from auditor.schema.findings import Findings


class Features(Analysis):
    """Top-activating examples, activation maximization, feature maps and attention heads per module."""

    id: ClassVar[str] = "features"
    title: ClassVar[str] = "Feature visualization"
    findings: ClassVar[Findings] = FINDINGS
    params_type: ClassVar[type[BaseModel]] = FeaturesParams
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "embedding", "causal_lm"})
    cost_note: ClassVar[str] = ("top examples from the capture's top-k; image optimization (steps × units) or a "
                                "token search per unit; a few small passes for maps and attention")

    def __init__(self, params: FeaturesParams | None = None) -> None:
        self.params: FeaturesParams = params or FeaturesParams()

    def modules(self, ctx: PlanContext) -> list[str]:
        """The modules to visualize: named by config, or evenly spaced blocks and the head (a causal language
        model: the MLP activations of evenly spaced layers, its neurons)."""
        p = self.params
        if p.modules or p.units:
            names = list(dict.fromkeys([*p.modules, *p.units]))
            # `pool@2`: only the 2nd call of a module used more than once per forward
            unknown = [n for n in names if n not in ctx.tree and split_call(n)[0] not in ctx.tree]
            if unknown:
                raise ConfigError(f"[analyses.features] names modules the model does not have: {unknown[:5]}")
            return names
        if ctx.subject.task == "causal_lm":
            neurons = neuron_modules(ctx, p.max_modules)
            if neurons:
                return neurons
        inner = [b for b in ctx.blocks if b.kind in ("layer", "stage")]
        activations = [b.name for b in inner if ctx.tree.nodes[b.name].activation]
        layers = [b.name for b in inner if b.kind == "layer"]
        pool = activations or layers or [b.name for b in inner]
        if len(pool) > p.max_modules:
            picks = np.linspace(0, len(pool) - 1, p.max_modules).round().astype(int)
            pool = [pool[i] for i in dict.fromkeys(picks.tolist())]
        head = next((b.name for b in ctx.blocks if b.kind == "head"), None)
        return [*pool, *([head] if head and ctx.subject.task == "classification" and head not in pool else [])]

    def needs(self, ctx: PlanContext) -> Needs:
        names = frozenset(n if n in ctx.tree else split_call(n)[0] for n in self.modules(ctx))
        relevant = ctx.subject.task in ("classification", "causal_lm")  # a causal LM's target: mean log p
        return Needs(top_k=self.params.top_k, top_k_modules=names,
                     unit_relevance=names if relevant else frozenset(), pooled=names)

    def cost(self, ctx: PlanContext) -> Cost:
        p, n = self.params, max(len(ctx.subject), 1)
        modules = len(self.modules(ctx))
        if ctx.subject.inputs.is_text:
            searches = modules * p.search_units if p.token_search else 0
            forwards = searches * p.search_steps * (p.search_candidates + 1)
            backwards = searches * p.search_steps
            attention = min(p.attention_samples, n) if p.attention else 0
            note = f"token search: {searches} units × {p.search_steps} steps × {p.search_candidates} candidates"
            if ctx.subject.task == "causal_lm":
                note += " (each scored at the sequence's last position)"
        else:
            units = modules * p.units_per_module
            forwards = backwards = units * p.steps
            attention = min(p.attention_samples, n) if p.attention and attention_modules(ctx) else 0
            note = f"image optimization: {units} units × {p.steps} steps"
        shown = modules * p.units_per_module * p.examples * 2 + p.feature_map_samples
        return Cost(forwards=(forwards + attention + shown) / n, backwards=backwards / n,
                    note=note + "; top examples from the capture")

    def run(self, ctx: AuditContext) -> Section:
        return Run(self.params, ctx).section(self, self.modules(ctx))


__all__ = ["Features", "FeaturesParams"]
