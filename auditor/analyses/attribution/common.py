"""What the image and text attributions share: the embeddings layer, Captum's forward function, the
samples shown, and the convergence check of Integrated Gradients."""


from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from auditor.engine.analysis import AuditContext, PlanContext
from auditor.schema.findings import Finding
from auditor.kit.captum import target_log_probability_fn
from auditor.subject import Subject
from auditor.analyses.attribution.findings import FINDINGS

METHOD_TITLES = {"integrated_gradients": "Integrated Gradients", "saliency": "Saliency",
                 "gradient_shap": "GradientShap", "occlusion": "Occlusion", "smoothgrad": "SmoothGrad",
                 "gradcam": "Grad-CAM"}




def embeddings_block(ctx: PlanContext) -> str | None:
    return next((b.name for b in ctx.blocks if b.kind == "embeddings"), None)


def forward_fn(subject: Subject, keys: Sequence[str]) -> Callable[..., torch.Tensor]:
    """Positional tensors -> log-probabilities of every target (Captum's `forward_func`; `target_log_probabilities`)."""
    return target_log_probability_fn(subject, subject.model, keys)


def shown_samples(ctx: AuditContext, *, per_class: int, misclassified: int) -> list[int]:
    """A few correctly classified samples per class, then misclassified ones, in data order."""
    targets = ctx.targets
    predictions = ctx.clean.predictions
    correct = (predictions == targets) if ctx.subject.labels is not None else torch.ones_like(targets, dtype=torch.bool)
    picked: list[int] = []
    for c in range(max(len(ctx.subject.class_names), 1)):
        picked += [int(i) for i in torch.nonzero((targets == c) & correct).flatten()[:per_class]]
    if ctx.subject.labels is not None:
        picked += [int(i) for i in torch.nonzero(~correct).flatten()[:misclassified]]
    return sorted(dict.fromkeys(picked))


def convergence(deltas: torch.Tensor, gains: torch.Tensor, tolerance: float) -> tuple[dict[str, float], list[Finding]]:
    median_delta = float(deltas.abs().median())
    median_gain = float(gains.abs().median())
    ratio = median_delta / median_gain if median_gain > 0 else (0.0 if median_delta == 0 else math.inf)
    metrics = {"ig_convergence_delta": median_delta, "ig_target_gain": median_gain, "ig_relative_delta": ratio}
    findings = []
    if ratio > tolerance:
        findings.append(FINDINGS.finding(
            "ig_not_converged",
            message=(f"Integrated Gradients did not converge: the median convergence delta {median_delta:.3g} is "
                     f"{ratio:.0%} of the median |F(x) − F(baseline)| {median_gain:.3g} (tolerance {tolerance:.0%}); "
                     "the maps do not add up to the change they explain. Raise n_steps."),
            evidence={"median_delta": median_delta, "median_gain": median_gain, "ratio": ratio,
                      "tolerance": tolerance}))
    return metrics, findings


# --- images and arrays -------------------------------------------------------------------------------------


def to_map(attribution: torch.Tensor) -> torch.Tensor:
    """One sample's attribution as a 2-D map (channels summed) or a 1-D profile for arrays."""
    a = attribution.detach().float()
    return a.sum(dim=0) if a.dim() == 3 else a.reshape(-1)


GRID_COLUMNS = 8
"""Samples per attribution-map figure: wide enough to read on a page, small enough to stay sharp."""


def clip(text: str, limit: int = 10) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def column_title(method: str) -> str:
    if method.startswith("gradcam:"):
        return "Grad-CAM\n" + clip(method.split(":", 1)[1].rsplit(".", 1)[-1], 14)
    return METHOD_TITLES.get(method, method)
