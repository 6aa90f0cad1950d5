"""`evaluate_policy`: judges an audit by a policy, optionally against the last release's audit.

A pure function of its inputs (today's date included, for waivers), returning a PolicyVerdict whose
exit code the CLI uses: 0 passed, 1 failed. A non-optional rule on a metric the audit does not have is
bad input (PolicyError, exit 2), not a failed check; an analysis that failed is a failed check.
"""

from __future__ import annotations

from datetime import date
from fnmatch import fnmatchcase

from auditor.errors import ExitCode, PolicyError
from auditor.schema.findings import Finding, Severity
from auditor.policy.checks import Checks, Missing, RuleContext, cap
from auditor.policy.metric_rules import metric_rule, module_label, module_metric_rule
from auditor.policy.pairing import pair
from auditor.policy.roles import evaluate_role_rule
from auditor.policy.rules import FindingRule, MetricRule, Policy, RoleRule, Rule, Waiver
from auditor.schema.verdict import PolicyVerdict, RuleKind, RuleResult, Status, WaivedFinding
from auditor.schema.report import AuditReport

FAILED_ANALYSIS = ".analysis_failed"


def _where(finding: Finding) -> str:
    return finding.key


# --- waivers -------------------------------------------------------------------------------------------

def _apply_waivers(findings: list[Finding], waivers: tuple[Waiver, ...], today: date
                   ) -> tuple[list[Finding], list[WaivedFinding], dict[str, Waiver], list[str]]:
    counted: list[Finding] = []
    waived: list[WaivedFinding] = []
    expired: dict[str, Waiver] = {}
    used: set[int] = set()
    for finding in findings:
        matching = [(i, w) for i, w in enumerate(waivers) if w.covers(finding)]
        used.update(i for i, _ in matching)
        active = next((w for _, w in matching if not w.expired(today)), None)
        if active is not None:
            waived.append(WaivedFinding(id=finding.id, module=finding.module, reason=active.reason,
                                        expires=active.expires, key=finding.key))
            continue
        counted.append(finding)
        if matching:
            expired[finding.key] = matching[0][1]
    notes = []
    for where, waiver in expired.items():
        notes.append(f"the waiver for {where} expired on {waiver.expires.isoformat()} and no longer waives it "
                     f"(reason was: {waiver.reason})")
    for i, waiver in enumerate(waivers):
        if i not in used:
            state = "expired, " if waiver.expired(today) else ""
            notes.append(f"the waiver for {waiver.describe()} ({state}until {waiver.expires.isoformat()}) matched no "
                         "finding: remove it")
    return counted, waived, expired, notes


# --- built-in rules ------------------------------------------------------------------------------------

def _analyses_completed(ctx: RuleContext) -> RuleResult:
    failed = [f for f in ctx.counted if f.id.endswith(FAILED_ANALYSIS)]
    ran = len(ctx.report.sections)
    not_run = "; ".join(f"{k} did not run ({v})" for k, v in ctx.report.not_run.items())
    if failed:
        names = ", ".join(f.id.removesuffix(FAILED_ANALYSIS) for f in failed)
        message = f"{len(failed)} of {ran} analyses failed: {names}"
        return RuleResult(name="every analysis completed", kind="builtin", status=Status.FAIL, message=message,
                          details=cap([f"{f.id}: {f.message}" for f in failed]))
    message = f"all {ran} analyses completed" + (f"; {not_run}" if not_run else "")
    return RuleResult(name="every analysis completed", kind="builtin", status=Status.PASS, message=message)


def _severity_rule(ctx: RuleContext, floor: Severity) -> RuleResult:
    name = f"no unwaived {floor.value}-severity findings" if floor is Severity.FAIL else \
        f"no unwaived findings at {floor.value} or worse"
    hits = [f for f in ctx.counted if f.severity.rank >= floor.rank and not f.id.endswith(FAILED_ANALYSIS)]
    if not hits:
        return RuleResult(name=name, kind="builtin", status=Status.PASS,
                          message=f"no finding at {floor.value} or worse" + _waived_note(ctx))
    listed = ", ".join(_where(f) for f in hits[:4]) + (", …" if len(hits) > 4 else "")
    return RuleResult(name=name, kind="builtin", status=Status.FAIL,
                      message=f"{len(hits)} finding{'s' * (len(hits) != 1)} at {floor.value} or worse: {listed}",
                      details=cap([_finding_line(f, ctx) for f in hits]))


def _waived_note(ctx: RuleContext) -> str:
    waived = len(ctx.report.findings) - len(ctx.counted)
    return f" ({waived} waived)" if waived else ""


def _finding_line(finding: Finding, ctx: RuleContext) -> str:
    line = f"{finding.severity.value} {_where(finding)}: {finding.message}"
    waiver = ctx.expired.get(finding.key)
    return line + (f" [waiver expired {waiver.expires.isoformat()}]" if waiver else "")


# --- policy rules --------------------------------------------------------------------------------------

def _finding_rule(rule: FindingRule, ctx: RuleContext) -> RuleResult:
    matched = [f for f in ctx.counted
               if any(fnmatchcase(f.id, pattern) for pattern in rule.findings)
               and f.severity.rank >= rule.severity.rank
               and (rule.modules is None or (f.module is not None and fnmatchcase(f.module, rule.modules)))]
    new = ""
    if rule.fail_on_new:
        if ctx.baseline is None:
            return RuleResult(name=rule.title, kind="findings", status=Status.SKIPPED,
                              message="not checked: fail_on_new needs a baseline (--baseline)")
        before = {f.key for f in ctx.baseline.findings}
        matched = [f for f in matched if f.key not in before]
        new = "new "
    checks = Checks(details=[_finding_line(f, ctx) for f in matched])
    listed = ", ".join(_where(f) for f in matched[:4]) + (", …" if len(matched) > 4 else "")
    count = f"{len(matched)} {new}matching finding{'s' * (len(matched) != 1)}"
    checks.check(len(matched) <= rule.max_count,
                 f"{count} (at most {rule.max_count} allowed)" + (f": {listed}" if matched else ""))
    return checks.result(rule, "findings")


def _evaluate(rule: Rule, ctx: RuleContext) -> RuleResult:
    if isinstance(rule, RoleRule):
        return evaluate_role_rule(rule, ctx.report, ctx.baseline)
    if isinstance(rule, FindingRule):
        return _finding_rule(rule, ctx)
    if isinstance(rule, MetricRule):
        return metric_rule(rule, ctx)
    return module_metric_rule(rule, ctx)


def _kind(rule: Rule) -> RuleKind:
    if isinstance(rule, RoleRule):
        return "role"
    return "findings" if isinstance(rule, FindingRule) else "metric" if isinstance(rule, MetricRule) else "module_metric"


# --- the verdict ---------------------------------------------------------------------------------------

def _describe(report: AuditReport) -> str:
    meta = report.metadata
    sha = f"weights {meta.weights_sha256[:12]}…, " if meta.weights_sha256 else ""
    return f"{meta.model_name} ({sha}audited {meta.created_at})"


def _module_sharing(baseline: AuditReport, report: AuditReport) -> str | None:
    old = [m.name for m in baseline.modules]
    new = [m.name for m in report.modules]
    only_old, only_new = [n for n in old if n not in set(new)], [n for n in new if n not in set(old)]
    if not only_old and not only_new:
        return None

    def listed(names: list[str]) -> str:
        return ", ".join(module_label(n) for n in names[:5]) + (f", … ({len(names)} in all)" if len(names) > 5 else "")

    shared = len(set(old) & set(new))
    parts = [f"the models differ: modules compared on the {shared} they share"]
    if only_old:
        parts.append(f"only in the baseline: {listed(only_old)}")
    if only_new:
        parts.append(f"only in this audit: {listed(only_new)}")
    return "; ".join(parts)


def evaluate_policy(report: AuditReport, policy: Policy | None = None, baseline: AuditReport | None = None, *,
                    today: date | None = None) -> PolicyVerdict:
    """Judges `report` by `policy` (default: fail on unwaived fail-severity findings), optionally against
    `baseline`, the last release's audit.

    Args:
        report: the audit to judge.
        policy: the rules and waivers (`auditor.load_policy(path)`); None: the built-in default policy.
        baseline: the previous release's audit, for max_drop, max_class_drop, min_rank_correlation,
            fail_on_new. Without it those checks are reported as not run.
        today: the date waivers are judged on (default: today).

    Returns:
        The PolicyVerdict: `passed`, `exit_code` (0 or 1), one RuleResult per rule.

    Raises:
        PolicyError: a rule that is not optional names a metric the audit does not have.
    """
    policy = policy or Policy()
    today = today or date.today()
    counted, waived, expired, notes = _apply_waivers(report.findings, policy.waivers, today)
    pairing = pair(baseline, report) if baseline is not None else None
    ctx = RuleContext(report=report, baseline=baseline, pairing=pairing, alpha=policy.alpha, counted=counted,
                   expired=expired)
    results = [_analyses_completed(ctx)]
    if policy.fail_on_severity != "none":
        results.append(_severity_rule(ctx, Severity(policy.fail_on_severity)))
    for rule in policy.rules:
        try:
            results.append(_evaluate(rule, ctx))
        except Missing as missing:
            if not rule.optional:
                raise PolicyError(f"rule {rule.title!r}: {missing}. Mark the rule optional = true to skip it "
                                  "when the audit does not have it") from None
            results.append(RuleResult(name=rule.title, kind=_kind(rule), status=Status.SKIPPED,
                                      message=f"skipped (optional): {missing}"))
    if baseline is not None:
        sharing = _module_sharing(baseline, report)
        if sharing:
            notes.append(sharing)
    failed = [r for r in results if r.status is Status.FAIL]
    passed = not failed
    counts = {s: sum(1 for r in results if r.status is s) for s in Status}
    if passed:
        extra = [f"{counts[s]} {label}" for s, label in ((Status.WARN, "warned"), (Status.SKIPPED, "skipped"))
                 if counts[s]]
        headline = (f"{counts[Status.PASS]} of {len(results)} rules passed" if extra else
                    f"All {len(results)} rules passed") + (f", {', '.join(extra)}" if extra else "") + "."
    else:
        headline = f"{len(failed)} of {len(results)} rules failed: {'; '.join(r.name for r in failed[:3])}" \
            f"{'; …' if len(failed) > 3 else ''}."
    return PolicyVerdict(
        passed=passed, exit_code=int(ExitCode.OK if passed else ExitCode.POLICY_FAILED), headline=headline,
        policy=policy.source, audit=_describe(report), baseline=_describe(baseline) if baseline is not None else None,
        comparison=pairing.description if pairing is not None else "no baseline", results=results, waived=waived,
        notes=notes, evaluated_on=today,
    )


__all__ = ["evaluate_policy"]
