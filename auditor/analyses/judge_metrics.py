"""The judge analysis's numbers: what the judges say about an ablated generator's samples against the intact
generator's, on the same noise, each with an interval over noise batches.

The noise batch is cut into `k` equal contiguous batches; every quantity is computed on the whole batch
(the estimate) and on each noise batch, and its interval is the estimate ± t(k-1) · sd / √k of the
noise-batch values. Samples are paired (the same noise feeds both generators), so a module that changes
nothing has every difference exactly 0 on every batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from scipy import stats

from auditor.analyses.ablation_targets import Target
from auditor.subject.judges import Verdicts


@dataclass(frozen=True)
class Estimate:
    """A value with its interval over noise batches."""

    value: float
    low: float
    high: float


def diversity(features: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between the samples' features (0 for fewer than two)."""
    if len(features) < 2:
        return 0.0
    return float(torch.pdist(features.double()).mean())


def histogram(probabilities: torch.Tensor, classes: int) -> torch.Tensor:
    """The share of samples the classifier assigns to each class (its top class)."""
    counts = torch.bincount(probabilities.argmax(dim=1), minlength=classes).double()
    return counts / max(len(probabilities), 1)


def total_variation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Half the L1 distance between two class histograms: the share of samples that would have to change class."""
    return float((a - b).abs().sum() / 2)


@dataclass(frozen=True)
class Reference:
    """The intact generator's samples and what the judges say of them, over the whole noise batch and each
    noise batch."""

    samples: torch.Tensor
    verdicts: Verdicts
    groups: list[slice]
    confidence: float
    conditions: torch.Tensor | None = None

    @property
    def classes(self) -> int:
        return self.verdicts.probabilities.shape[1] if self.verdicts.probabilities is not None else 0

    @property
    def realness(self) -> float:
        return float(self.verdicts.realness.mean())

    @property
    def confidence_mean(self) -> float:
        p = self.verdicts.probabilities
        return float(p.max(dim=1).values.mean()) if p is not None else math.nan

    @property
    def histogram(self) -> torch.Tensor | None:
        p = self.verdicts.probabilities
        return histogram(p, self.classes) if p is not None else None

    @property
    def diversity(self) -> float:
        return diversity(self.verdicts.features)

    @property
    def condition_accuracy(self) -> float:
        """A conditional generator: the share of samples the classifier sees as the class they asked for."""
        p = self.verdicts.probabilities
        if p is None or self.conditions is None:
            return math.nan
        return float((p.argmax(dim=1) == self.conditions).double().mean())

    def interval(self, value: float, per_group: Sequence[float]) -> Estimate:
        k = len(per_group)
        if k < 2:
            return Estimate(value, value, value)
        spread = float(torch.tensor(per_group, dtype=torch.float64).std()) / math.sqrt(k)
        half = float(stats.t.ppf((1 + self.confidence) / 2, k - 1)) * spread
        return Estimate(value, value - half, value + half)


def noise_batches(n: int, k: int) -> list[slice]:
    """`k` contiguous noise batches of near-equal size (fewer when there are fewer than 2k samples)."""
    k = max(1, min(k, n // 2))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(k)]


@dataclass
class JudgeRow:
    """One ablated module (or unit): what the judges say against the intact generator."""

    target: Target
    realness: float
    realness_drop: Estimate
    sample_change: float
    """Mean distance of the ablated samples from the intact ones, over the intact samples' spread (mean
    distance from their mean): 0 = unchanged, ~1 = as far as a typical sample is from the average one."""
    confidence_drop: Estimate | None = None
    class_shift: Estimate | None = None
    class_drops: dict[int, Estimate] = field(default_factory=dict)
    """Class -> the drop of its share of the samples (only classes holding at least the minimum share)."""
    shares: torch.Tensor | None = None
    """The ablated generator's class histogram."""
    diversity_change: Estimate | None = None
    condition_drop: Estimate | None = None

    @property
    def relative_realness_drop(self) -> float:
        intact = self.realness + self.realness_drop.value
        return self.realness_drop.value / intact if intact > 0 else math.nan

    def relative_class_drop(self, c: int, ref: Reference) -> float:
        hist = ref.histogram
        assert hist is not None
        return self.class_drops[c].value / float(hist[c])

    def module_metrics(self) -> dict[str, float]:
        values = {"judge_realness_drop": self.realness_drop.value, "judge_sample_change": self.sample_change}
        if self.confidence_drop is not None:
            values["judge_confidence_drop"] = self.confidence_drop.value
        if self.class_shift is not None:
            values["judge_class_shift"] = self.class_shift.value
        if self.diversity_change is not None:
            values["judge_diversity_change"] = self.diversity_change.value
        if self.condition_drop is not None:
            values["judge_condition_drop"] = self.condition_drop.value
        return values


def _relative_change(after: float, before: float) -> float:
    return after / before - 1.0 if before > 0 else (0.0 if after == before else math.inf)


def judge_row(ref: Reference, target: Target, samples: torch.Tensor, verdicts: Verdicts, *,
              min_class_share: float) -> JudgeRow:
    """Compares one ablated generator's samples and verdicts with the intact ones, batch by noise batch."""
    v0, v1, groups = ref.verdicts, verdicts, ref.groups

    def paired(fn: Callable[[slice], float]) -> Estimate:
        return ref.interval(fn(slice(None)), [fn(g) for g in groups])

    realness_drop = paired(lambda s: float(v0.realness[s].mean() - v1.realness[s].mean()))
    intact = ref.samples.double()
    spread = float((intact - intact.mean(dim=0)).norm(dim=1).mean())
    moved = float((samples.double() - intact).norm(dim=1).mean())
    row = JudgeRow(target=target, realness=float(v1.realness.mean()), realness_drop=realness_drop,
                   sample_change=moved / spread if spread > 0 else (0.0 if moved == 0 else math.inf))
    if v0.probabilities is not None and v1.probabilities is not None:
        p0, p1, k = v0.probabilities, v1.probabilities, ref.classes
        row.confidence_drop = paired(lambda s: float(p0[s].max(dim=1).values.mean() - p1[s].max(dim=1).values.mean()))
        row.class_shift = paired(lambda s: total_variation(histogram(p0[s], k), histogram(p1[s], k)))
        h0 = histogram(p0, k)
        row.shares = histogram(p1, k)
        def share_drop(c: int) -> Callable[[slice], float]:
            return lambda s: float(histogram(p0[s], k)[c] - histogram(p1[s], k)[c])
        for c in range(k):
            if float(h0[c]) >= min_class_share:
                row.class_drops[c] = paired(share_drop(c))
        if ref.conditions is not None:
            asked = ref.conditions
            row.condition_drop = paired(lambda s: float((p0[s].argmax(1) == asked[s]).double().mean()
                                                        - (p1[s].argmax(1) == asked[s]).double().mean()))
    f0, f1 = v0.features, v1.features
    row.diversity_change = paired(lambda s: _relative_change(diversity(f1[s]), diversity(f0[s])))
    return row


__all__ = ["Estimate", "JudgeRow", "Reference", "diversity", "histogram", "judge_row", "noise_batches",
           "total_variation"]
