"""What the release gate decided: one result per rule, with the numbers, and the exit code.

Plain data (pydantic, frozen): the verdict is stored in audit.json when the audit is judged as it runs,
and every renderer (terminal, JUnit, Markdown, HTML) is a function of it.
"""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict

_FROZEN = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")


class Status(str, Enum):
    """A rule's outcome. `warn`: a rule marked `critical = false` was breached; `skipped`: it could not
    apply (an optional rule on a metric the audit lacks, a baseline rule without a baseline)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


RuleKind = Literal["findings", "metric", "module_metric", "role", "builtin"]


class RuleResult(BaseModel):
    """One rule judged: its name, its status, and a line with the numbers that decided it."""

    model_config = _FROZEN

    name: str
    """The rule as a reader knows it: its `name` in the policy, else what it checks."""
    kind: RuleKind
    status: Status
    message: str
    """One line with the numbers: `performance.accuracy 0.925 < min 0.95`."""
    details: list[str] = []
    """The lines behind the message: each breaching module or class, each finding that counted."""


class WaivedFinding(BaseModel):
    """A finding a waiver covered: it did not count against any rule."""

    model_config = _FROZEN

    id: str
    module: str | None = None
    reason: str
    expires: date
    key: str | None = None
    """The finding's key (`Finding.key`): its id, module and what it is about."""


class PolicyVerdict(BaseModel):
    """The gate's answer: passed or not, the exit code, and every rule's result."""

    model_config = _FROZEN

    passed: bool
    exit_code: int
    """0 passed, 1 policy failed (`ExitCode`)."""
    headline: str
    policy: str
    """Where the rules came from: a policy file (portable path) or "built-in default policy"."""
    audit: str
    """The judged audit: model name, weights sha256 prefix, creation time."""
    baseline: str | None = None
    comparison: str = "no baseline"
    """How the baseline was compared: paired on the same samples, or unpaired and why."""
    results: list[RuleResult] = []
    waived: list[WaivedFinding] = []
    notes: list[str] = []
    """What a reader should know besides the rules: expired or unused waivers, modules not shared."""
    evaluated_on: date

    def with_status(self, *statuses: Status) -> list[RuleResult]:
        return [r for r in self.results if r.status in statuses]

    @property
    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for r in self.results if r.status is s) for s in Status}
