"""The ablation analysis's numbers: each ablation against the intact model, with paired bootstrap intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from scipy.stats import beta

from auditor.kit.removal import PruneStep, Target
from auditor.engine.prefix_plan import PassRoute
from auditor.subject.task import log_probabilities

if TYPE_CHECKING:
    from auditor.analyses.ablation.params import AblationParams
    from auditor.engine.analysis import AuditContext


@dataclass
class Row:
    """One ablation's numbers."""

    target: Target
    route: PassRoute | None
    drop: float = math.nan
    low: float = math.nan
    high: float = math.nan
    loss_increase: float = math.nan
    kl: float = math.nan
    changed: float = math.nan
    changed_upper: float = math.nan
    class_drops: dict[str, float] = field(default_factory=dict)
    collapsed_to: str | None = None
    """The class the ablated model predicts for nearly every sample, when it collapses."""

    def metrics(self, embedding: bool) -> dict[str, float]:
        if embedding:
            return {"ablation_embedding_change": self.drop, "ablation_embedding_change_low": self.low,
                    "ablation_embedding_change_high": self.high}
        values = {"ablation_drop": self.drop, "ablation_drop_low": self.low, "ablation_drop_high": self.high,
                  "ablation_loss_increase": self.loss_increase, "ablation_kl": self.kl,
                  "ablation_changed": self.changed}
        values.update({f"ablation_drop/{c}": v for c, v in self.class_drops.items()})
        return values


@dataclass
class Reference:
    """The intact model on the audit data, as every ablation is compared to it."""

    scores: torch.Tensor
    labels: torch.Tensor | None
    """(samples,) labels, or the intact predictions when the data has none."""
    log_p: torch.Tensor | None
    correct: torch.Tensor | None
    loss: torch.Tensor | None
    predictions: torch.Tensor | None
    classes: dict[str, torch.Tensor]
    """Class name -> its samples (mask)."""
    weights: torch.Tensor
    """(resamples, samples) bootstrap counts / samples."""
    confidence: float
    sample_distance: float = math.nan
    """A bare encoder: the median cosine distance between two different samples' intact embeddings, the scale
    an ablation's embedding change is judged on (its equivalence margin is a share of it)."""

    @property
    def embedding(self) -> bool:
        return self.log_p is None

    @property
    def accuracy(self) -> float:
        """The intact model's accuracy (against the labels, or 1.0 against its own predictions); NaN for a bare encoder."""
        return float(self.correct.double().mean()) if self.correct is not None else math.nan


def reference(ctx: AuditContext, p: AblationParams) -> Reference:
    scores = ctx.capture.scores.double()
    n = scores.shape[0]
    generator = torch.Generator().manual_seed(ctx.config.seed)
    counts = torch.multinomial(torch.full((n,), 1.0 / n), n * p.bootstrap, replacement=True, generator=generator)
    weights = torch.zeros(p.bootstrap, n, dtype=torch.float64)
    weights.scatter_add_(1, counts.reshape(p.bootstrap, n), torch.full((p.bootstrap, n), 1.0 / n, dtype=torch.float64))
    if ctx.subject.task != "classification":
        return Reference(scores=scores, labels=None, log_p=None, correct=None, loss=None, predictions=None,
                         classes={}, weights=weights, confidence=p.confidence,
                         sample_distance=median_sample_distance(scores))
    log_p = log_probabilities(scores)
    predictions = ctx.clean.predictions
    labels = ctx.subject.labels if ctx.subject.labels is not None else predictions
    valid = labels >= 0
    correct = (predictions == labels) & valid
    safe = labels.clamp_min(0)
    loss = -log_p.gather(1, safe.unsqueeze(1)).squeeze(1).clamp_min(math.log(1e-12))
    names = ctx.subject.class_names
    classes = {(names[c] if c < len(names) else str(c)): (labels == c) for c in sorted(set(labels[valid].tolist()))}
    return Reference(scores=scores, labels=labels, log_p=log_p, correct=correct, loss=loss, predictions=predictions,
                     classes=classes, weights=weights, confidence=p.confidence)


def median_sample_distance(embeddings: torch.Tensor, *, limit: int = 512) -> float:
    """The median cosine distance (1 − cos) between two different samples' embeddings (the first `limit`)."""
    x = embeddings[:limit].double()
    x = x[torch.isfinite(x).all(dim=1)]
    if x.shape[0] < 2:
        return math.nan
    unit = torch.nn.functional.normalize(x, dim=1, eps=1e-12)
    pairs = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    distances = 1.0 - (unit @ unit.T)[pairs[0], pairs[1]]
    return float(distances.clamp_min(0.0).median())


def bootstrap_interval(ref: Reference, per_sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paired percentile bootstrap of the mean of each column of (samples, rows)."""
    means = ref.weights @ per_sample.double()
    tail = (1 - ref.confidence) / 2
    return torch.quantile(means, tail, dim=0), torch.quantile(means, 1 - tail, dim=0)


def score_rows(ref: Reference, targets: Sequence[Target], scores: Sequence[torch.Tensor],
               routes: Sequence[PassRoute | None]) -> list[Row]:
    """Every target's numbers against the intact model; intervals from one bootstrap matrix."""
    rows = [Row(target=t, route=r) for t, r in zip(targets, routes, strict=True)]
    if not rows:
        return rows
    per_sample = torch.stack([_per_sample(ref, s.double(), row) for s, row in zip(scores, rows, strict=True)], dim=1)
    low, high = bootstrap_interval(ref, per_sample)
    for i, row in enumerate(rows):
        row.drop, row.low, row.high = float(per_sample[:, i].mean()), float(low[i]), float(high[i])
    return rows


ONE_EMBEDDING = "one embedding"
"""`Row.collapsed_to` of a bare encoder whose ablated embeddings are (nearly) the same for every sample."""
EMBEDDING_COLLAPSE_SPREAD = 0.01
"""Collapsed: the ablated embeddings' spread over samples (mean squared distance from their mean) is at most
this share of the intact embeddings' spread."""


def _spread(scores: torch.Tensor) -> float:
    finite = scores[torch.isfinite(scores).all(dim=1)]
    if finite.shape[0] < 2:
        return 0.0
    return float(((finite - finite.mean(dim=0)) ** 2).sum(dim=1).mean())


def _per_sample(ref: Reference, scores: torch.Tensor, row: Row) -> torch.Tensor:
    """The per-sample change one ablation makes (accuracy lost, or cosine distance); fills the row's other numbers."""
    if ref.log_p is None:
        cosine = torch.nn.functional.cosine_similarity(scores, ref.scores, dim=1, eps=1e-12)
        same = (scores == ref.scores).all(dim=1)  # untouched: exactly 0, not a rounding error of the cosine
        change = torch.where(torch.isfinite(cosine), (1.0 - cosine).clamp_min(0.0), torch.ones_like(cosine))
        if _spread(scores) <= EMBEDDING_COLLAPSE_SPREAD * _spread(ref.scores):
            row.collapsed_to = ONE_EMBEDDING
        return torch.where(same, torch.zeros_like(change), change)
    assert ref.labels is not None and ref.correct is not None and ref.loss is not None and ref.predictions is not None
    log_p = log_probabilities(scores)
    finite = torch.isfinite(log_p).all(dim=1)
    predictions = torch.where(finite, log_p.argmax(dim=1), torch.full_like(ref.predictions, -1))
    correct = (predictions == ref.labels) & (ref.labels >= 0)
    lost = ref.correct.double() - correct.double()
    loss = -log_p.gather(1, ref.labels.clamp_min(0).unsqueeze(1)).squeeze(1)
    loss = torch.where(torch.isfinite(loss), loss, torch.full_like(loss, -math.log(1e-12))).clamp_max(-math.log(1e-12))
    row.loss_increase = float((loss - ref.loss).mean())
    kl = (ref.log_p.exp() * (ref.log_p - log_p)).sum(dim=1)
    row.kl = float(kl.mean()) if bool(torch.isfinite(kl).all()) else math.inf
    changed = int((predictions != ref.predictions).sum())
    n = len(predictions)
    row.changed = changed / n
    row.changed_upper = float(beta.ppf(ref.confidence, changed + 1, n - changed)) if changed < n else 1.0
    row.class_drops = {c: float(lost[mask].mean()) for c, mask in ref.classes.items()}
    shares = torch.bincount(predictions.clamp_min(0), minlength=2).double() / n
    top = int(shares.argmax())
    names = list(ref.classes)
    intact_top = float(torch.bincount(ref.predictions.clamp_min(0)).max()) / n
    if float(shares[top]) >= 0.9 and intact_top < 0.9:
        row.collapsed_to = names[top] if top < len(names) else str(top)
    return lost


def prune_key(ref: Reference) -> str:
    return "prune_embedding_change" if ref.embedding else "prune_accuracy"


Curve = dict[str, list[tuple[float, float]]]


def pruning_curves(steps: Sequence[PruneStep], rows: Sequence[Row], ref: Reference) -> dict[str, Curve]:
    """Per layer and method: (fraction removed, accuracy or embedding change), in order."""
    base = 0.0 if ref.embedding else ref.accuracy
    curves: dict[str, Curve] = {}
    for step, row in zip(steps, rows, strict=True):
        value = row.drop if ref.embedding else base - row.drop
        curves.setdefault(step.layer, {}).setdefault(step.method, []).append((step.fraction, value))
    for curve in curves.values():
        for points in curve.values():
            points.sort()
    return curves


def prunable_fraction(points: Sequence[tuple[float, float]], ref: Reference, tolerance: float) -> float:
    """The largest fraction up to which every step keeps the metric within `tolerance` (0: none)."""
    base = 0.0 if ref.embedding else ref.accuracy
    best = 0.0
    for fraction, value in points:
        lost = value if ref.embedding else base - value
        if lost > tolerance:
            break
        best = fraction
    return best


__all__ = ["Curve", "Reference", "Row", "bootstrap_interval", "prunable_fraction", "prune_key", "pruning_curves",
           "reference", "score_rows"]
