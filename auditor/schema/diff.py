"""The release diff as data: what changed between two audits, with the test of each change.

`auditor.policy.diff.diff_reports` computes it; the renderers (terminal, Markdown, HTML) only read it.
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from auditor.schema.cards import RoleChange
from auditor.schema.findings import Finding
from auditor.schema.report import AuditReport, Figure

_FROZEN = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")
ACCURACY = "performance.accuracy"
TOP_MOVES = 12
"""Moves shown per analysis section."""


def changed(old: float | None, new: float | None) -> bool:
    if old is None or new is None:
        return old is not new
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) != math.isnan(new)
    return not math.isclose(old, new, rel_tol=1e-9, abs_tol=1e-12)


class AuditSummary(BaseModel):
    """Which audit: enough to tell two releases apart at a glance."""

    model_config = _FROZEN | ConfigDict(protected_namespaces=())

    model_name: str
    model_class: str
    weights_sha256: str | None
    data_source: str
    data_fingerprint: str | None
    n_samples: int
    created_at: str
    verdict: str
    """The audit's verdict status; when it was judged by a release policy, the gate's (pass or fail)."""
    gate: Literal["passed", "failed"] | None = None
    """The release gate's result when the audit was judged as it ran (`auditor run --policy`)."""

    @classmethod
    def of(cls, report: AuditReport) -> AuditSummary:
        meta = report.metadata
        return cls(model_name=meta.model_name, model_class=meta.model_class, weights_sha256=meta.weights_sha256,
                   data_source=meta.data_source, data_fingerprint=meta.data_fingerprint, n_samples=meta.n_samples,
                   created_at=meta.created_at, verdict=report.verdict.status,
                   gate=None if report.policy is None else "passed" if report.policy.passed else "failed")


class _Delta(BaseModel):
    """A number in both audits, with the test of its change when it is a rate of right answers."""

    model_config = _FROZEN

    old: float | None
    new: float | None
    test: Literal["McNemar", "Fisher"] | None = None
    p_value: float | None = None
    worse: int | None = None
    """Paired: samples right in the old audit and wrong in the new one."""
    better: int | None = None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def changed(self) -> bool:
        return changed(self.old, self.new)

    @property
    def decisive_p(self) -> float | None:
        """The p-value compared with alpha."""
        return self.p_value

    def significant(self, alpha: float) -> bool | None:
        p = self.decisive_p
        return None if p is None else p < alpha


class MetricDelta(_Delta):
    """A report metric in both audits; accuracy carries its significance test."""

    metric: str

    def test_line(self) -> str:
        if self.test is None or self.p_value is None:
            return ""
        return ChangeTest(self.test, self.p_value, self.worse, self.better).describe()


class ClassDelta(_Delta):
    """One class's accuracy (its recall) in both audits, with its test and its Holm-adjusted p-value."""

    name: str
    support_old: int
    support_new: int
    p_holm: float | None = None
    """Holm-adjusted over all classes: the p-value to compare with alpha."""

    @property
    def decisive_p(self) -> float | None:
        return self.p_holm

    def test_line(self) -> str:
        if self.test is None or self.p_holm is None:
            return ""
        flips = f"; {self.worse} now wrong, {self.better} now right" if self.worse is not None else ""
        return f"{self.test} p = {self.p_holm:.2g} Holm-adjusted{flips}"


class ModuleMove(BaseModel):
    """A per-module number that moved: `score` is the change over the key's spread across the shared modules
    (both audits' values together, at least 0.1% of the key's largest magnitude: `policy.diff.spread_of`), so
    keys of different scales rank together and a score never exceeds 2·√(shared modules) (a change is at most
    twice its values' distance from their mean, and their squares are part of the variance)."""

    model_config = _FROZEN

    section: str
    key: str
    module: str
    old: float
    new: float
    score: float
    also: list[str] = []
    """Modules showing the very same numbers (a container or a pooling layer repeating this module's output)."""

    @property
    def delta(self) -> float:
        return self.new - self.old


class RankCorrelation(BaseModel):
    """How a per-module metric ranks the shared modules in both audits (Spearman's rho)."""

    model_config = _FROZEN

    section: str
    key: str
    rho: float | None
    modules: int


class FigurePair(BaseModel):
    """One figure both audits have, for a side-by-side view."""

    model_config = _FROZEN

    section: str
    id: str
    title: str
    old: Figure
    new: Figure


class ReleaseDiff(BaseModel):
    """What changed from `old` (the baseline) to `new`."""

    model_config = _FROZEN

    old: AuditSummary
    new: AuditSummary
    paired: bool
    comparison: str
    alpha: float
    metrics: list[MetricDelta]
    classes: list[ClassDelta]
    findings_added: list[Finding]
    findings_resolved: list[Finding]
    findings_unchanged: int
    modules_shared: int
    modules_only_old: list[str]
    modules_only_new: list[str]
    module_moves: list[ModuleMove]
    rank_correlations: list[RankCorrelation]
    sections_only_old: list[str]
    sections_only_new: list[str]
    figures: list[FigurePair]
    role_changes: list[RoleChange] = []
    """Modules carded in both audits whose role tags changed (the module atlas)."""

    @property
    def changed(self) -> bool:
        return bool(any(m.changed for m in self.metrics) or any(c.changed for c in self.classes)
                    or self.findings_added or self.findings_resolved or self.module_moves
                    or self.modules_only_old or self.modules_only_new or self.sections_only_old
                    or self.sections_only_new or self.role_changes)

    @property
    def same_weights(self) -> bool:
        return self.old.weights_sha256 is not None and self.old.weights_sha256 == self.new.weights_sha256

    def headline(self) -> str:
        gate = "" if self.new.gate is None else f"Release gate {self.new.gate}. "
        if not self.changed:
            return gate + "No change: every metric, class, finding and module number is the same."
        parts = []
        accuracy = next((m for m in self.metrics if m.metric == ACCURACY and m.delta is not None), None)
        if accuracy is not None and accuracy.delta is not None:
            sig = accuracy.significant(self.alpha)
            note = "" if sig is None else (" (significant)" if sig else " (within noise)")
            parts.append(f"accuracy {accuracy.old:.1%} → {accuracy.new:.1%}{note}")
        worse = [c for c in self.classes if c.delta is not None and c.delta < 0 and c.significant(self.alpha)]
        if worse:
            parts.append(f"{len(worse)} class{'es' * (len(worse) != 1)} significantly worse "
                         f"({', '.join(c.name for c in worse[:3])}{', …' if len(worse) > 3 else ''})")
        parts.append(f"{len(self.findings_added)} finding{'s' * (len(self.findings_added) != 1)} added, "
                     f"{len(self.findings_resolved)} resolved")
        return gate + "; ".join(parts) + "."


@dataclass(frozen=True)
class ChangeTest:
    """Whether a change in a rate (accuracy, a class's recall) is more than noise."""

    test: Literal["McNemar", "Fisher"]
    p_value: float
    worse: int | None = None
    """Paired: samples right in the old audit and wrong in the new one."""
    better: int | None = None
    """Paired: samples wrong in the old audit and right in the new one."""

    def describe(self) -> str:
        """`McNemar p = 0.0021: 14 samples now wrong, 2 now right` or `Fisher p = 0.31, unpaired`."""
        if self.worse is not None and self.better is not None:
            return (f"{self.test} p = {format_p(self.p_value)}: {self.worse} sample{'s' * (self.worse != 1)} now "
                    f"wrong, {self.better} now right")
        return f"{self.test} p = {format_p(self.p_value)}, unpaired"


def format_p(p: float) -> str:
    """`0.031`, `2.1e-07`; below 1e-16 `< 1e-16` (a float's tail probability that small is rounding, never 0)."""
    if p < 1e-16:
        return "< 1e-16"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
