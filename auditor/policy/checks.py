"""What every policy rule is judged with: the audit and its baseline (`RuleContext`), the checks one rule
made (`Checks`), and how a rule says the audit lacks what it names (`Missing`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from auditor.policy.pairing import Pairing
from auditor.policy.rules import Rule, Waiver
from auditor.schema.findings import Finding
from auditor.schema.report import AuditReport
from auditor.schema.verdict import RuleKind, RuleResult, Status

MAX_DETAILS = 12
EPS = 1e-12


class Missing(Exception):
    """The audit lacks what a rule names; why, in words."""


@dataclass(frozen=True)
class RuleContext:
    report: AuditReport
    baseline: AuditReport | None
    pairing: Pairing | None
    alpha: float
    counted: list[Finding]
    """The findings no waiver covers."""
    expired: dict[str, Waiver]
    """Findings that count again because their waiver expired."""


@dataclass
class Checks:
    """What one rule found: the checks that held, those breached, and notes on what could not be checked."""

    held: list[str] = field(default_factory=list)
    breached: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def check(self, ok: bool, text: str) -> None:
        (self.held if ok else self.breached).append(text)

    def result(self, rule: Rule, kind: RuleKind) -> RuleResult:
        if self.breached:
            status = Status.FAIL if rule.critical else Status.WARN
            message = "; ".join(self.breached)
        elif self.held:
            status, message = Status.PASS, "; ".join(self.held)
        else:
            status, message = Status.SKIPPED, ""
        if self.notes:
            notes = "; ".join(self.notes)
            message = f"{message} ({notes})" if message else notes
        return RuleResult(name=rule.title, kind=kind, status=status, message=message, details=cap(self.details))


def cap(lines: list[str]) -> list[str]:
    return lines if len(lines) <= MAX_DETAILS else [*lines[:MAX_DETAILS], f"… and {len(lines) - MAX_DETAILS} more"]


def num(value: float) -> str:
    return f"{value:.4g}"


def points(delta: float | None) -> str:
    """A change of a rate in percentage points: `−17.0 pts`, `0.0 pts`."""
    value = (delta or 0.0) * 100 + 0.0  # + 0.0: no "-0.0"
    return f"{value:.1f} pts".replace("-", "−")
