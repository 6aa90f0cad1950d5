"""A release policy as data: rules on findings, on report metrics and on per-module metrics, and waivers.

In TOML, one `[[rule]]` table per rule and one `[[waiver]]` table per waiver (dotted keys would break on
finding ids and module names that hold dots). What a rule is about is named by exactly one key:

    findings = [...]        finding ids or glob patterns (`inventory.*`), with a severity floor
    metric = "..."          a report metric, `<analysis id>.<name>` (`performance.accuracy`)
    module_metric = "..."   a per-module metric, `<analysis id>.<key>` (`inventory.dead_fraction`), over
                            the modules whose names match `modules` (a glob, default every module)

Thresholds: `min` / `max` on the audit itself; `max_drop` / `max_rise` / `max_class_drop` /
`min_rank_correlation` / `fail_on_new` against the baseline (the last release's audit).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from auditor.schema.findings import Finding, Severity

_STRICT = ConfigDict(frozen=True, extra="forbid")
_QUALIFIED = re.compile(r"[A-Za-z0-9_\-]+\.\S.*")


class _Rule(BaseModel):
    """What every rule has: a name to show, whether a missing metric is allowed, and how much it matters."""

    model_config = _STRICT

    name: str | None = None
    """Shown in the verdict, JUnit and Markdown; default: what the rule checks."""
    optional: bool = False
    """True: a metric the audit does not have skips the rule (and says so) instead of exiting 2."""
    critical: bool = True
    """False: a breach warns instead of failing the check."""

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def title(self) -> str:
        return self.name or self.describe()


def _bounds(lower: float | None, upper: float | None) -> str:
    parts = []
    if lower is not None:
        parts.append(f"≥ {lower:g}")
    if upper is not None:
        parts.append(f"≤ {upper:g}")
    return " and ".join(parts)


class FindingRule(_Rule):
    """Counts the unwaived findings matching `findings` at or above `severity`; more than `max_count` fails.

    With `fail_on_new = true` only findings absent from the baseline count (by their key: the same id, module
    and what they are about).
    """

    findings: list[str] = Field(min_length=1)
    """Finding ids or glob patterns: `performance.near_chance`, `inventory.*`, `*`."""
    severity: Severity = Severity.INFO
    """Severity floor: only findings at or above it count."""
    modules: str | None = None
    """Only findings on modules whose names match this glob."""
    max_count: int = Field(0, ge=0)
    fail_on_new: bool = False

    @field_validator("findings", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def describe(self) -> str:
        what = ", ".join(self.findings)
        floor = "" if self.severity is Severity.INFO else f" at {self.severity.value} or worse"
        where = f" on {self.modules}" if self.modules else ""
        new = " new since the baseline" if self.fail_on_new else ""
        limit = "no" if self.max_count == 0 else f"at most {self.max_count}"
        return f"{limit}{new} findings {what}{floor}{where}"


class MetricRule(_Rule):
    """A report metric (`report.metrics`, e.g. `performance.accuracy`) within bounds, and against the
    baseline within a drop or rise. A drop in accuracy (overall, or of one class) counts only when it is
    significant at `alpha`: McNemar's test on paired predictions, Fisher's exact test when unpaired."""

    metric: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = Field(None, ge=0)
    """Against the baseline: at most this much lower (absolute: 0.02 = two points of accuracy)."""
    max_rise: float | None = Field(None, ge=0)
    """Against the baseline: at most this much higher (for metrics where lower is better: ece, nll)."""
    max_class_drop: float | None = Field(None, ge=0)
    """Only for `performance.accuracy`: no class's accuracy (its recall) may drop more than this."""
    alpha: float | None = Field(None, gt=0, lt=1)
    """Significance level of this rule's tests (default: the policy's `alpha`)."""

    @model_validator(mode="after")
    def _checks_something(self) -> MetricRule:
        if not _QUALIFIED.fullmatch(self.metric):
            raise ValueError(f"metric {self.metric!r} must be '<analysis id>.<name>', e.g. 'performance.accuracy'")
        if all(v is None for v in (self.min, self.max, self.max_drop, self.max_rise, self.max_class_drop)):
            raise ValueError("a metric rule needs at least one of min, max, max_drop, max_rise, max_class_drop")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if self.max_class_drop is not None and self.metric != "performance.accuracy":
            raise ValueError("max_class_drop applies to metric 'performance.accuracy' (a class's accuracy is "
                             "its recall)")
        return self

    def describe(self) -> str:
        parts = [p for p in (_bounds(self.min, self.max),
                             f"drop ≤ {self.max_drop:g}" if self.max_drop is not None else "",
                             f"rise ≤ {self.max_rise:g}" if self.max_rise is not None else "",
                             f"class drop ≤ {self.max_class_drop:g}" if self.max_class_drop is not None else "")
                 if p]
        return f"{self.metric} {', '.join(parts)}"


class ModuleMetricRule(_Rule):
    """A per-module metric (`Section.module_metrics`) on every module matching `modules`: within bounds,
    within a drop or rise against the baseline, and ranked like the baseline (Spearman's rho over the
    modules both audits have)."""

    module_metric: str
    """`<analysis id>.<key>`: `inventory.dead_fraction`; a key may carry a qualifier (`gradients.grad_norm/cat`)."""
    modules: str = "*"
    """Glob over module names (`features.*`, `encoder.layer.*.attention`); the model itself is ""."""
    min: float | None = None
    max: float | None = None
    max_drop: float | None = Field(None, ge=0)
    max_rise: float | None = Field(None, ge=0)
    min_rank_correlation: float | None = Field(None, ge=-1, le=1)

    @model_validator(mode="after")
    def _checks_something(self) -> ModuleMetricRule:
        if not _QUALIFIED.fullmatch(self.module_metric):
            raise ValueError(f"module_metric {self.module_metric!r} must be '<analysis id>.<key>', "
                             "e.g. 'inventory.dead_fraction'")
        if all(v is None for v in (self.min, self.max, self.max_drop, self.max_rise, self.min_rank_correlation)):
            raise ValueError("a module_metric rule needs at least one of min, max, max_drop, max_rise, "
                             "min_rank_correlation")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    @property
    def section(self) -> str:
        return self.module_metric.split(".", 1)[0]

    @property
    def key(self) -> str:
        return self.module_metric.split(".", 1)[1]

    def describe(self) -> str:
        parts = [p for p in (_bounds(self.min, self.max),
                             f"drop ≤ {self.max_drop:g}" if self.max_drop is not None else "",
                             f"rise ≤ {self.max_rise:g}" if self.max_rise is not None else "",
                             f"rank correlation ≥ {self.min_rank_correlation:g}"
                             if self.min_rank_correlation is not None else "") if p]
        where = "" if self.modules == "*" else f" on {self.modules}"
        return f"{self.module_metric}{where} {', '.join(parts)}"


class RoleRule(_Rule):
    """Role changes against the baseline (the module atlas's tags): a module that had the tag `roles` in
    the baseline and now has `becomes` breaches; `"*"` is any tag (`roles = "*"`, `becomes = "*"`: any change
    of tags). Skipped without a baseline. `critical = false` makes a breach warn."""

    roles: str
    """The baseline's tag or tag kind: `main path`, `class-specific`, `carries: label`, `*`."""
    becomes: str = "*"
    """The tag or tag kind now: `dead units`, `redundant`, `*` (any change of the module's tags)."""
    modules: str = "*"
    """Glob over module names."""

    def describe(self) -> str:
        where = "" if self.modules == "*" else f" on {self.modules}"
        now = "changes its tags" if self.becomes == "*" else f"becomes {self.becomes!r}"
        was = "a module" if self.roles == "*" else f"a {self.roles!r} module"
        return f"no {was}{where} {now}"


Rule = FindingRule | MetricRule | ModuleMetricRule | RoleRule
RULE_SUBJECTS: dict[str, type[FindingRule] | type[MetricRule] | type[ModuleMetricRule] | type[RoleRule]] = {
    "findings": FindingRule, "metric": MetricRule, "module_metric": ModuleMetricRule, "roles": RoleRule,
}
"""The key that says what a `[[rule]]` is about, and the rule type it makes."""


class Waiver(BaseModel):
    """Accepts a finding (by id, optionally on one module) until `expires`, with the reason why."""

    model_config = _STRICT

    finding: str
    """The exact finding id: `inventory.dead_units`."""
    module: str | None = None
    """The exact module name; absent: the finding on any module."""
    key: str | None = None
    """The exact finding key (`auditor check` and the report show it), for one of several findings with the
    same id on the same module: `probes.peak_layer on features.relu1 [property=orientation]`."""
    reason: str = Field(min_length=1)
    expires: date
    """The last day the waiver holds; from the next day on it no longer waives, and the verdict says so."""

    @field_validator("reason")
    @classmethod
    def _reason_says_something(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a waiver needs a reason")
        return value.strip()

    def covers(self, finding: Finding) -> bool:
        return (finding.id == self.finding and (self.module is None or self.module == finding.module)
                and (self.key is None or self.key == finding.key))

    def expired(self, today: date) -> bool:
        return today > self.expires

    def describe(self) -> str:
        if self.key is not None:
            return self.key
        return f"{self.finding}" + (f" on {self.module}" if self.module is not None else "")


class Policy(BaseModel):
    """Everything `auditor check` judges an audit by. The default (no file) fails on any unwaived
    fail-severity finding and on any analysis that failed, and never on warnings."""

    model_config = _STRICT

    fail_on_severity: Literal["info", "warn", "fail", "none"] = "fail"
    """The built-in findings rule: any unwaived finding at or above this severity fails ("none": off)."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """Significance level of the tests that decide whether a drop against the baseline is real."""
    rules: tuple[Rule, ...] = ()
    waivers: tuple[Waiver, ...] = ()
    source: str = "built-in default policy"
    """Where the policy came from (a file's portable path); set by `load_policy`, not read from TOML."""


__all__ = ["FindingRule", "MetricRule", "ModuleMetricRule", "Policy", "RULE_SUBJECTS", "RoleRule", "Rule", "Waiver"]
