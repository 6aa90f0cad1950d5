"""The judge analysis's numbers: what the judges say about an ablated generator's samples against the intact
generator's, on the same noise, each with an interval over noise batches.

The noise batch is cut into `k` equal contiguous batches; every quantity is computed on the whole batch
(the estimate) and on each noise batch, and its interval is the estimate ± t(k-1) · sd / √k of the
noise-batch values. Samples are paired (the same noise feeds both generators), so a module that changes
nothing has every difference exactly 0 on every batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
from scipy import stats

from auditor.kit.removal import Target
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
class Judged:
    """What the judges say of one set of samples, over the whole noise batch (index 0) and each noise batch
    (1, 2, ...): computed once per set, then compared."""

    realness: list[float]
    diversity: list[float]
    confidence: list[float] | None = None
    histogram: list[torch.Tensor] | None = None
    condition: list[float] | None = None
    """A conditional generator: the share of samples the classifier sees as the class they asked for."""


def judged(verdicts: Verdicts, slices: Sequence[slice], conditions: torch.Tensor | None) -> Judged:
    """The judges' numbers on each of `slices` of the samples."""
    v, p = verdicts, verdicts.probabilities
    out = Judged(realness=[float(v.realness[s].mean()) for s in slices],
                 diversity=[diversity(v.features[s]) for s in slices])
    if p is None:
        return out
    top = p.argmax(dim=1)
    return replace(out, confidence=[float(p[s].max(dim=1).values.mean()) for s in slices],
                   histogram=[histogram(p[s], p.shape[1]) for s in slices],
                   condition=[float((top[s] == conditions[s]).double().mean()) for s in slices]
                   if conditions is not None else None)


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
    def slices(self) -> list[slice]:
        """The whole noise batch, then each noise batch."""
        return [slice(None), *self.groups]

    @cached_property
    def judged(self) -> Judged:
        return judged(self.verdicts, self.slices, self.conditions)

    @cached_property
    def spread(self) -> float:
        """The intact samples' mean distance from their average (what `sample_change` is relative to)."""
        intact = self.samples.double()
        return float((intact - intact.mean(dim=0)).norm(dim=1).mean())

    @property
    def classes(self) -> int:
        return self.verdicts.probabilities.shape[1] if self.verdicts.probabilities is not None else 0

    @property
    def realness(self) -> float:
        return self.judged.realness[0]

    @property
    def confidence_mean(self) -> float:
        return self.judged.confidence[0] if self.judged.confidence is not None else math.nan

    @property
    def histogram(self) -> torch.Tensor | None:
        return self.judged.histogram[0] if self.judged.histogram is not None else None

    @property
    def diversity(self) -> float:
        return self.judged.diversity[0]

    @property
    def condition_accuracy(self) -> float:
        """A conditional generator: the share of samples the classifier sees as the class they asked for."""
        return self.judged.condition[0] if self.judged.condition is not None else math.nan

    def interval(self, value: float, per_group: Sequence[float]) -> Estimate:
        k = len(per_group)
        if k < 2:
            return Estimate(value, value, value)
        spread = float(torch.tensor(per_group, dtype=torch.float64).std()) / math.sqrt(k)
        half = float(stats.t.ppf((1 + self.confidence) / 2, k - 1)) * spread
        return Estimate(value, value - half, value + half)

    def compare(self, values: Sequence[float]) -> Estimate:
        """An estimate (whole noise batch) with its interval over the noise batches."""
        return self.interval(values[0], values[1:])


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
    a, b = ref.judged, judged(verdicts, ref.slices, ref.conditions)

    def drop(before: Sequence[float], after: Sequence[float]) -> Estimate:
        return ref.compare([x - y for x, y in zip(before, after, strict=True)])

    moved = float((samples.double() - ref.samples.double()).norm(dim=1).mean())
    row = JudgeRow(target=target, realness=b.realness[0], realness_drop=drop(a.realness, b.realness),
                   sample_change=moved / ref.spread if ref.spread > 0 else (0.0 if moved == 0 else math.inf))
    if a.confidence is not None and b.confidence is not None and a.histogram is not None \
            and b.histogram is not None:
        row.confidence_drop = drop(a.confidence, b.confidence)
        row.class_shift = ref.compare([total_variation(h0, h1) for h0, h1 in zip(a.histogram, b.histogram,
                                                                                  strict=True)])
        row.shares = b.histogram[0]
        for c in range(ref.classes):
            if float(a.histogram[0][c]) >= min_class_share:
                row.class_drops[c] = ref.compare([float(h0[c] - h1[c]) for h0, h1 in zip(a.histogram, b.histogram,
                                                                                           strict=True)])
        if a.condition is not None and b.condition is not None:
            row.condition_drop = drop(a.condition, b.condition)
    row.diversity_change = ref.compare([_relative_change(after, before)
                                        for before, after in zip(a.diversity, b.diversity, strict=True)])
    return row


__all__ = ["Estimate", "JudgeRow", "Judged", "Reference", "diversity", "judged", "histogram", "judge_row", "noise_batches",
           "total_variation"]
