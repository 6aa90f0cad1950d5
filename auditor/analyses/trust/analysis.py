"""Can the explanations be trusted? Three checks an attribution map must pass before it is evidence.

- **Sanity** (Adebayo et al., 2018): re-initialize the weights cascading from the output down, on a copy
  of the model, and recompute the maps of a few samples at each step. Maps that stay alike after the
  model has been destroyed describe the input, not the model. Per method and step: Spearman's rank
  correlation of the signed maps and, for images, the SSIM of the absolute maps (for text and arrays the
  rank correlation of the absolute maps), beside each map's correlation with the input itself (what an
  edge detector would give): methods that multiply by the input (IG, gradient × input) keep a high
  absolute-map similarity after full randomization; the report says so instead of hiding it.
  `trust.sanity_failed` (warn) when a method's signed maps after full randomization still correlate
  above `sanity_threshold` with the originals: it judges the explainer, not the model.
- **Faithfulness** (Petsiuk et al., 2018): deletion and insertion curves against random orders, with a
  one-sided Wilcoxon test over samples; images lose square patches filled by ROAD's noisy linear
  imputation (Rong et al., 2022), which stays near the data where black pixels do not (Hooker et al.,
  2019). The test's power is measured on the model first: occlusion of the same patches (faithful by
  construction) must beat random orders and random maps must not. Then `trust.unfaithful` (warn) when a
  method's order is not better than random; without power `trust.faithfulness_inconclusive` (info) says
  why (random deletion already collapses the prediction, or the references are not told apart).
- **Reliance on protected features**: the share of attribution that named words or an image region take,
  per class; and counterfactual edits, the test of reliance rather than attention: swap word pairs
  (he↔she, first names of different groups; a default English list ships with the package) or replace a
  region, and measure the change of the target's probability and the share of flipped predictions, per
  class, with intervals. `trust.protected_feature` (warn; a policy can make it fail).

Cost: (steps + 1) × methods explanations of `samples` samples (IG: n_steps forwards and backwards each);
2 × (deletion_steps + 1) × (random_orders + methods + 2) forwards per sample, plus one per position
(occlusion); one forward per edited sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import BaseModel

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.errors import ConfigError
from auditor.schema.report import Cost, Section
from auditor.subject import Task
import auditor.analyses.trust.faithfulness as faith
from auditor.analyses.trust.explainers import (IMAGE_EXPLAINERS, TEXT_EXPLAINERS, Explainer)

from auditor.analyses.trust.params import TrustParams
from auditor.analyses.trust.run import TrustRun
from auditor.analyses.trust.findings import FINDINGS
from auditor.schema.findings import Findings


class Trust(Analysis):
    """Sanity (randomization), faithfulness (deletion/insertion) and protected-feature reliance checks."""

    id: ClassVar[str] = "trust"
    title: ClassVar[str] = "Can the explanations be trusted?"
    findings: ClassVar[Findings] = FINDINGS
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "causal_lm"})
    params_type: ClassVar[type[BaseModel]] = TrustParams
    cost_note: ClassVar[str] = ("explanations of 16 samples at every randomization step; deletion/insertion curves "
                                "(methods, two references, random orders) and occlusion of every position (the "
                                "test's power); one forward per counterfactual edit")

    def __init__(self, params: TrustParams | None = None, *, explainers: Mapping[str, Explainer] | None = None) -> None:
        self.params: TrustParams = params or TrustParams()
        self.extra = dict(explainers or {})
        """Explainers beyond the built-in ones, by name (a new method, or one a test plants)."""

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None and ctx.subject.inputs.is_text \
                and not any(b.kind == "embeddings" for b in ctx.blocks):
            return "the text model has no embeddings module to attribute over"
        return reason

    def explainers(self, text: bool) -> dict[str, Explainer]:
        known = {**(TEXT_EXPLAINERS if text else IMAGE_EXPLAINERS), **self.extra}
        names = self.params.methods or (tuple(TEXT_EXPLAINERS if text else IMAGE_EXPLAINERS) + tuple(self.extra))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"[analyses.trust] methods names unknown explainers {unknown}; known: {sorted(known)}")
        return {n: known[n] for n in names}

    def cost(self, ctx: PlanContext) -> Cost:
        p, n = self.params, max(len(ctx.subject), 1)
        s = min(p.samples, n)
        methods = self.params.methods or (("a", "b") if ctx.subject.inputs.is_text else ("a", "b", "c"))
        steps = len(ctx.blocks) + 1
        per_explain = p.n_steps + len(methods)  # IG plus one pass for each gradient method
        sanity = steps * s * per_explain
        positions = self._positions(ctx)
        # the curves of every method, of the two references (occlusion, random maps) and of the random orders;
        # occlusion itself: one forward per position
        deletion = s * (2 * (p.deletion_steps + 1) * (p.random_orders + len(methods) + 2) + positions)
        # a causal LM: no protected edits; one forward over the texts whose predictions are chosen
        edits = 2 * n if ctx.subject.head.per_class else (s + 1) // 2
        return Cost(forwards=(sanity + deletion + edits) / n, backwards=sanity / n,
                    note=f"{s} samples explained at ~{steps} randomization steps; deletion/insertion curves with "
                         f"{p.random_orders} random orders and two references (occlusion of the {positions} "
                         "positions, one forward each, and random maps); counterfactual edits")

    def _positions(self, ctx: PlanContext) -> int:
        """How many positions deletion ranks per sample: patches, features or (at most) tokens."""
        inputs = ctx.subject.inputs
        x = inputs.first[inputs.key]
        if inputs.is_text:
            return int(x.shape[1])
        if x.dim() == 4:
            side = self.params.patch or faith.patch_side(x.shape[2], x.shape[3])
            return int(faith.patch_ids(x.shape[2], x.shape[3], side).max()) + 1
        return int(x[0].numel())

    def run(self, ctx: AuditContext) -> Section:
        return TrustRun(self, self.params, self.explainers, ctx).run()


__all__ = ["Trust", "TrustParams"]
