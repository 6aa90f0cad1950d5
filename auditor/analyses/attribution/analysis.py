"""Input attributions: what in the input drives each decision. Captum's implementations throughout.

- Images (and arrays): Integrated Gradients (Sundararajan et al., 2017) and Saliency (Simonyan et al.,
  2014) by default; GradientShap (Lundberg & Lee, 2017), Occlusion (Zeiler & Fergus, 2014) and SmoothGrad
  (Smilkov et al., 2017, Captum's NoiseTunnel) by config; Grad-CAM (Selvaraju et al., 2017) on the last
  convolutional block. Heat maps over a few samples per class, misclassified ones included.
- Vision transformers: the same pixel methods, and Grad-CAM on the patch tokens of the last encoder
  layer reshaped to the patch grid (written here: Captum's LayerGradCam averages over the last axes of a
  conv map and has no notion of tokens; this is pytorch-grad-cam's `reshape_transform`).
- Text: Layer Integrated Gradients over the embeddings block, from a baseline of pad tokens that keeps
  [CLS]/[SEP]; word pieces merged back into words; each shown sample rendered as its words shaded by
  attribution. Across all the audit data, the words that carry the most attribution toward each class,
  from a two-point form of the same method (Captum's LIG with the trapezoid rule on the baseline and the
  input: the mean of the two gradients times the embedding's distance from the baseline).

Target: the engine's (the labelled class, else the predicted one). IG's convergence delta is kept per
sample; `attribution.ig_not_converged` warns when its median is a large share of |F(x) - F(baseline)|.
Memory: IG runs with an `internal_batch_size` chosen from `memory_budget_mb` and the bytes one sample's
forward and backward keep, measured on one sample, so it never holds n_steps x batch inputs at once.

Cost: IG on `samples` samples (n_steps forwards and backwards each), plus small passes for the shown
examples; for text one more forward and backward over the data for the word ranking.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.schema.report import Cost, Section
from auditor.subject import Task



from auditor.analyses.attribution.common import embeddings_block
from auditor.analyses.attribution.image import ImageAttribution
from auditor.analyses.attribution.lm import LMAttribution
from auditor.kit.captum_lm import input_embeddings
from auditor.analyses.attribution.params import AttributionParams
from auditor.analyses.attribution.text import TextAttribution
from auditor.analyses.attribution.findings import DEFAULT_RULES, FINDINGS
from auditor.schema.findings import DefaultRule, Findings


class Attribution(Analysis):
    """Heat maps and token highlights of what in the input drives the decision, with IG's convergence."""

    id: ClassVar[str] = "attribution"
    title: ClassVar[str] = "Input attributions"
    findings: ClassVar[Findings] = FINDINGS
    default_rules: ClassVar[tuple[DefaultRule, ...]] = DEFAULT_RULES
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "causal_lm"})
    params_type: ClassVar[type[BaseModel]] = AttributionParams
    cost_note: ClassVar[str] = ("Integrated Gradients on up to 64 samples (32 forwards and backwards each), "
                                "small passes for the shown examples; text: two more passes for the word ranking; "
                                "causal LMs: one forward over 16 texts and IG on two predictions of each")

    def __init__(self, params: AttributionParams | None = None) -> None:
        self.params: AttributionParams = params or AttributionParams()

    def not_applicable(self, ctx: PlanContext) -> str | None:
        reason = super().not_applicable(ctx)
        if reason is None and ctx.subject.inputs.is_text and embeddings_block(ctx) is None:
            return "the text model has no embeddings module to attribute over"
        if reason is None and ctx.subject.head.target_reads_inputs and input_embeddings(ctx.subject) is None:
            return "the language model has no input embeddings module (get_input_embeddings) to attribute over"
        return reason

    def cost(self, ctx: PlanContext) -> Cost:
        p, n = self.params, len(ctx.subject)
        if ctx.subject.head.target_reads_inputs:  # explained predictions: two per text, n_steps each
            texts = min(p.lm_texts, n)
            return Cost(forwards=(texts + 2 * texts * p.n_steps + 4 * texts) / max(n, 1),
                        backwards=2 * texts * p.n_steps / max(n, 1),
                        note=f"one forward over {texts} texts to choose their predictions; IG on up to "
                             f"{2 * texts} predictions × {p.n_steps} steps, two forwards each for its convergence")
        ig = min(p.samples, n) * p.n_steps
        shown = min(n, p.examples_per_class * max(len(ctx.subject.class_names), 1) + p.misclassified)
        extra = {"saliency": 1, "gradient_shap": p.gradient_shap_samples, "smoothgrad": p.smoothgrad_samples,
                 "occlusion": 16}
        per_shown = 1 + sum(extra.get(m, 0) for m in p.methods)
        text_rank = 2 * n if ctx.subject.inputs.is_text else 0
        samples = ig + shown * per_shown + text_rank
        return Cost(forwards=samples / n, backwards=samples / n,
                    note=f"IG on {min(p.samples, n)} samples × {p.n_steps} steps"
                         + (", a two-point ranking of every sample's words" if text_rank else ""))

    def run(self, ctx: AuditContext) -> Section:
        if ctx.subject.head.target_reads_inputs:
            return LMAttribution(self.params, ctx).run(self)
        if ctx.subject.inputs.is_text:
            return TextAttribution(self.params, ctx).run(self)
        return ImageAttribution(self.params, ctx).run(self)


# --- shared pieces --------------------------------------------------------------------------------------

__all__ = ["Attribution"]
