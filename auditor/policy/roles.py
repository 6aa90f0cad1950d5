"""Role changes between releases (the module atlas's tags) and the `roles` rule that judges them."""

from __future__ import annotations

from fnmatch import fnmatchcase

from auditor.policy.rules import RoleRule
from auditor.schema.cards import Card, RoleChange, tag_kind
from auditor.schema.report import AuditReport
from auditor.schema.verdict import RuleResult, Status
from auditor.synthesis import cards_of

MAX_DETAILS = 20


def _matches(tags: list[str], wanted: str) -> bool:
    return wanted == "*" or any(t == wanted or tag_kind(t) == wanted for t in tags)


def role_changes(old: AuditReport, new: AuditReport) -> list[RoleChange]:
    """The modules carded in both audits whose tags differ, in the new audit's model order (each audit's
    stored cards, or cards computed for an audit written before 1.3)."""
    before: dict[str, Card] = {c.module: c for c in cards_of(old)}
    changes = []
    for card in cards_of(new):
        previous = before.get(card.module)
        if previous is not None and sorted(previous.tags) != sorted(card.tags):
            changes.append(RoleChange(module=card.module, old=list(previous.tags), new=list(card.tags)))
    return changes


def evaluate_role_rule(rule: RoleRule, report: AuditReport, baseline: AuditReport | None) -> RuleResult:
    """Fails (warns when not critical) for each module that had `roles` in the baseline and has `becomes` now."""
    if baseline is None:
        return RuleResult(name=rule.title, kind="role", status=Status.SKIPPED,
                          message="not checked: role changes need a baseline (--baseline)")
    changes = [c for c in role_changes(baseline, report) if fnmatchcase(c.module, rule.modules)]
    breaches = [c for c in changes if _matches(c.old, rule.roles)
                and (_matches(c.added, rule.becomes) if rule.becomes != "*" else True)]
    if rule.becomes != "*":
        breaches = [c for c in breaches if _matches(c.new, rule.becomes)]
    details = [c.describe() for c in breaches[:MAX_DETAILS]]
    if len(breaches) > MAX_DETAILS:
        details.append(f"… and {len(breaches) - MAX_DETAILS} more")
    if breaches:
        status = Status.FAIL if rule.critical else Status.WARN
        message = f"{len(breaches)} module{'s' * (len(breaches) != 1)}: " + "; ".join(details[:3]) + \
            ("; …" if len(breaches) > 3 else "")
    else:
        status = Status.PASS
        message = f"no such role change ({len(changes)} module{'s' * (len(changes) != 1)} changed tags)"
    return RuleResult(name=rule.title, kind="role", status=status, message=message, details=details)


__all__ = ["evaluate_role_rule", "role_changes"]
