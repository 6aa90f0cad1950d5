"""`[analyses.attribution]`: methods, samples shown, Integrated Gradients' steps and memory budget."""


from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


Method = Literal["integrated_gradients", "saliency", "gradient_shap", "occlusion", "smoothgrad"]




class AttributionParams(BaseModel):
    """`[analyses.attribution]`. The defaults keep the MiniLM demo's section under a minute on 2 CPU cores."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    methods: tuple[Method, ...] = ("integrated_gradients", "saliency")
    """Image methods; text always uses Layer Integrated Gradients over the embeddings."""
    samples: int = Field(64, ge=1)
    """Samples Integrated Gradients runs on (convergence, per-class maps); a seeded draw plus those shown."""
    n_steps: int = Field(32, ge=2, le=1000)
    examples_per_class: int = Field(2, ge=0, le=20)
    misclassified: int = Field(4, ge=0, le=40)
    """Misclassified samples shown besides the per-class examples."""
    baseline: Literal["zeros", "mean"] = "zeros"
    """Images and arrays: a black (all-zero) input, or the audit data's mean input."""
    gradcam_layers: tuple[str, ...] = ()
    """Modules to run Grad-CAM on (default: the last convolutional block, or a ViT's last layer)."""
    memory_budget_mb: int = Field(512, ge=16)
    """What one Integrated Gradients batch may hold; sets Captum's internal_batch_size."""
    convergence_tolerance: float = Field(0.05, gt=0.0)
    """Warn when IG's median |convergence delta| exceeds this share of the median |F(x) - F(baseline)|."""
    top_words: int = Field(12, ge=1)
    occlusion_window: int = Field(4, ge=1)
    """Side of Occlusion's square window (its stride is half of it)."""
    smoothgrad_samples: int = Field(16, ge=1)
    gradient_shap_samples: int = Field(16, ge=1)
    lm_texts: int = Field(16, ge=1)
    """Causal language models: texts whose most confident correct and most wrong predictions are explained."""
    lm_shown: int = Field(8, ge=0)
    """Causal language models: predictions shown token by token in the report (all are in the table)."""
    dominant_share: float = Field(0.4, gt=0.0, le=1.0)
    far_tokens: int = Field(3, ge=1)
    """`attribution.far_token`: one prefix token at least `far_tokens` positions before the predicted one carries at
    least `dominant_share` of a prediction's total |attribution|."""


