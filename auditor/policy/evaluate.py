"""`evaluate_policy`: judges an audit by a policy, optionally against the last release's audit.

A pure function of its inputs (today's date included, for waivers), returning a PolicyVerdict whose
exit code the CLI uses: 0 passed, 1 failed. A non-optional rule on a metric the audit does not have is
bad input (PolicyError, exit 2), not a failed check; an analysis that failed is a failed check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from fnmatch import fnmatchcase

from auditor.errors import ExitCode, PolicyError
from auditor.schema.findings import Finding, Severity
from auditor.policy.diff import ACCURACY, accuracy_delta, class_deltas, module_values
from auditor.policy.pairing import Pairing, pair
from auditor.policy.roles import evaluate_role_rule
from auditor.policy.rules import FindingRule, MetricRule, ModuleMetricRule, Policy, RoleRule, Rule, Waiver
from auditor.policy.stats import spearman
from auditor.schema.verdict import PolicyVerdict, RuleKind, RuleResult, Status, WaivedFinding
from auditor.schema.report import AuditReport

MAX_DETAILS = 12
FAILED_ANALYSIS = ".analysis_failed"
_EPS = 1e-12


class _Missing(Exception):
    """The audit lacks what a rule names; why, in words."""


@dataclass(frozen=True)
class _Context:
    report: AuditReport
    baseline: AuditReport | None
    pairing: Pairing | None
    alpha: float
    counted: list[Finding]
    """The findings no waiver covers."""
    expired: dict[str, Waiver]
    """Findings that count again because their waiver expired."""


@dataclass
class _Checks:
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
        return RuleResult(name=rule.title, kind=kind, status=status, message=message, details=_cap(self.details))


def _cap(lines: list[str]) -> list[str]:
    return lines if len(lines) <= MAX_DETAILS else [*lines[:MAX_DETAILS], f"… and {len(lines) - MAX_DETAILS} more"]


def _num(value: float) -> str:
    return f"{value:.4g}"


def _points(delta: float | None) -> str:
    """A change of a rate in percentage points: `−17.0 pts`, `0.0 pts`."""
    value = (delta or 0.0) * 100 + 0.0  # + 0.0: no "-0.0"
    return f"{value:.1f} pts".replace("-", "−")


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

def _analyses_completed(ctx: _Context) -> RuleResult:
    failed = [f for f in ctx.counted if f.id.endswith(FAILED_ANALYSIS)]
    ran = len(ctx.report.sections)
    not_run = "; ".join(f"{k} did not run ({v})" for k, v in ctx.report.not_run.items())
    if failed:
        names = ", ".join(f.id.removesuffix(FAILED_ANALYSIS) for f in failed)
        message = f"{len(failed)} of {ran} analyses failed: {names}"
        return RuleResult(name="every analysis completed", kind="builtin", status=Status.FAIL, message=message,
                          details=_cap([f"{f.id}: {f.message}" for f in failed]))
    message = f"all {ran} analyses completed" + (f"; {not_run}" if not_run else "")
    return RuleResult(name="every analysis completed", kind="builtin", status=Status.PASS, message=message)


def _severity_rule(ctx: _Context, floor: Severity) -> RuleResult:
    name = f"no unwaived {floor.value}-severity findings" if floor is Severity.FAIL else \
        f"no unwaived findings at {floor.value} or worse"
    hits = [f for f in ctx.counted if f.severity.rank >= floor.rank and not f.id.endswith(FAILED_ANALYSIS)]
    if not hits:
        return RuleResult(name=name, kind="builtin", status=Status.PASS,
                          message=f"no finding at {floor.value} or worse" + _waived_note(ctx))
    listed = ", ".join(_where(f) for f in hits[:4]) + (", …" if len(hits) > 4 else "")
    return RuleResult(name=name, kind="builtin", status=Status.FAIL,
                      message=f"{len(hits)} finding{'s' * (len(hits) != 1)} at {floor.value} or worse: {listed}",
                      details=_cap([_finding_line(f, ctx) for f in hits]))


def _waived_note(ctx: _Context) -> str:
    waived = len(ctx.report.findings) - len(ctx.counted)
    return f" ({waived} waived)" if waived else ""


def _finding_line(finding: Finding, ctx: _Context) -> str:
    line = f"{finding.severity.value} {_where(finding)}: {finding.message}"
    waiver = ctx.expired.get(finding.key)
    return line + (f" [waiver expired {waiver.expires.isoformat()}]" if waiver else "")


# --- policy rules --------------------------------------------------------------------------------------

def _finding_rule(rule: FindingRule, ctx: _Context) -> RuleResult:
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
    checks = _Checks(details=[_finding_line(f, ctx) for f in matched])
    listed = ", ".join(_where(f) for f in matched[:4]) + (", …" if len(matched) > 4 else "")
    count = f"{len(matched)} {new}matching finding{'s' * (len(matched) != 1)}"
    checks.check(len(matched) <= rule.max_count,
                 f"{count} (at most {rule.max_count} allowed)" + (f": {listed}" if matched else ""))
    return checks.result(rule, "findings")


def _missing(report: AuditReport, section_id: str, what: str) -> _Missing:
    if section_id in report.not_run:
        return _Missing(f"the audit has no {what}: {section_id} did not run ({report.not_run[section_id]})")
    section = next((s for s in report.sections if s.id == section_id), None)
    if section is not None and section.error is not None:
        return _Missing(f"the audit has no {what}: the {section_id} analysis failed")
    if section is None:
        return _Missing(f"the audit has no {what}: it has no {section_id} section "
                        f"(sections: {', '.join(s.id for s in report.sections) or 'none'})")
    return _Missing(f"the audit has no {what}")


def _metric_rule(rule: MetricRule, ctx: _Context) -> RuleResult:
    report, metric = ctx.report, rule.metric
    if metric not in report.metrics:
        section = metric.split(".", 1)[0]
        missing = _missing(report, section, f"metric {metric!r}")
        names = sorted(k for k in report.metrics if k.startswith(f"{section}."))
        raise _Missing(f"{missing}; its {section} metrics are {', '.join(names)}") if names else missing
    value = report.metrics[metric]
    checks = _Checks()
    if rule.min is not None:
        checks.check(value >= rule.min, f"{metric} {_num(value)} {'≥' if value >= rule.min else '<'} min {rule.min:g}")
    if rule.max is not None:
        checks.check(value <= rule.max, f"{metric} {_num(value)} {'≤' if value <= rule.max else '>'} max {rule.max:g}")
    if rule.max_drop is None and rule.max_rise is None and rule.max_class_drop is None:
        return checks.result(rule, "metric")
    if ctx.baseline is None or ctx.pairing is None:
        checks.notes.append("baseline checks not run: no baseline")
        return checks.result(rule, "metric")
    old = ctx.baseline.metrics.get(metric)
    if old is None:
        checks.notes.append(f"baseline checks not run: the baseline has no {metric}")
        return checks.result(rule, "metric")
    alpha = rule.alpha if rule.alpha is not None else ctx.alpha
    test = accuracy_delta(ctx.baseline, report, ctx.pairing) if metric == ACCURACY else None
    test_line = test.test_line() if test is not None else ""
    significant = test is None or test.p_value is None or test.p_value < alpha
    for limit, change, word in ((rule.max_drop, old - value, "drop"), (rule.max_rise, value - old, "rise")):
        if limit is None:
            continue
        moved = f"{metric} {_num(old)} → {_num(value)}, {word} {_num(max(change, 0.0))}"
        if metric == ACCURACY:  # in points too, as the class drops beside it are
            moved += f" ({_points(max(change, 0.0))})"
        if change <= limit + _EPS:
            checks.check(True, f"{moved} ≤ max_{word} {limit:g}")
        elif significant:
            checks.check(False, f"{moved} > max_{word} {limit:g}" + (f" ({test_line})" if test_line else ""))
        else:
            checks.check(True, f"{moved} > max_{word} {limit:g}, but within noise ({test_line} ≥ alpha {alpha:g})")
    if rule.max_class_drop is not None:
        _class_drops(rule.max_class_drop, alpha, ctx, checks)
    return checks.result(rule, "metric")


def _class_drops(limit: float, alpha: float, ctx: _Context, checks: _Checks) -> None:
    assert ctx.baseline is not None and ctx.pairing is not None
    classes = [c for c in class_deltas(ctx.baseline, ctx.report, ctx.pairing) if c.delta is not None]
    if not classes:
        checks.notes.append("class drops not checked: no per-class accuracy in both audits")
        return
    over = [c for c in classes if c.delta is not None and -c.delta > limit + _EPS]
    real = [c for c in over if c.p_holm is None or c.p_holm < alpha]
    for c in sorted(over, key=lambda c: c.delta or 0.0):
        noise = "" if c in real else f", within noise at alpha {alpha:g}"
        checks.details.append(f"class {c.name!r}: {c.old:.1%} → {c.new:.1%} ({c.test_line()}{noise})")
    worst = min(classes, key=lambda c: c.delta or 0.0)
    if real:
        names = ", ".join(f"{c.name!r} {_points(c.delta)}" for c in real[:4]) + (", …" if len(real) > 4 else "")
        checks.check(False, f"{len(real)} class{'es' * (len(real) != 1)} dropped more than max_class_drop {limit:g}: "
                            f"{names}")
    else:
        extra = f"; {len(over)} over it but within noise" if over else ""
        checks.check(True, f"largest class drop {_points(min(worst.delta or 0.0, 0.0))} ({worst.name!r}), "
                           f"max_class_drop {limit:g}{extra}")


def _module_metric_rule(rule: ModuleMetricRule, ctx: _Context) -> RuleResult:
    report = ctx.report
    values = module_values(report, rule.section, rule.key)
    section = next((s for s in report.sections if s.id == rule.section), None)
    if values is None or section is None or section.error is not None:
        raise _missing(report, rule.section, f"per-module metric {rule.module_metric!r}")
    if not values:
        keys = sorted({k for v in section.module_metrics.values() for k in v})
        raise _Missing(f"the {rule.section} section has no per-module {rule.key!r} (it has: {', '.join(keys) or 'none'})")
    selected = {name: v for name, v in values.items() if fnmatchcase(name, rule.modules)}
    if not selected:
        raise _Missing(f"no module matching {rule.modules!r} has {rule.module_metric!r} ({len(values)} modules have it)")
    checks = _Checks()
    if rule.min is not None or rule.max is not None:
        low = -float("inf") if rule.min is None else rule.min
        high = float("inf") if rule.max is None else rule.max
        bad = sorted(((n, v) for n, v in selected.items() if not low <= v <= high), key=lambda item: item[1])
        bounds = " and ".join(p for p in (f"≥ {rule.min:g}" if rule.min is not None else "",
                                          f"≤ {rule.max:g}" if rule.max is not None else "") if p)
        if bad:
            listed = ", ".join(f"{_module(n)} {_num(v)}" for n, v in bad[:4]) + (", …" if len(bad) > 4 else "")
            checks.check(False, f"{len(bad)} of {len(selected)} modules outside {bounds}: {listed}")
            checks.details += [f"{_module(n)}: {rule.key} = {_num(v)}" for n, v in bad]
        else:
            parents = {row.parent for row in report.modules}  # on a tie, name the module, not its container
            top = max(selected.items(), key=lambda item: (item[1], item[0] not in parents))
            checks.check(True, f"all {len(selected)} modules {bounds} (highest {_num(top[1])} at {_module(top[0])})")
    baseline_checks = rule.max_drop is not None or rule.max_rise is not None or rule.min_rank_correlation is not None
    if baseline_checks:
        _module_baseline(rule, selected, ctx, checks)
    return checks.result(rule, "module_metric")


def _module(name: str) -> str:
    return name or "(model)"


def _module_baseline(rule: ModuleMetricRule, selected: dict[str, float], ctx: _Context, checks: _Checks) -> None:
    if ctx.baseline is None:
        checks.notes.append("baseline checks not run: no baseline")
        return
    old = module_values(ctx.baseline, rule.section, rule.key) or {}
    shared = [n for n in selected if n in old]
    if not shared:
        checks.notes.append(f"baseline checks not run: no module matching {rule.modules!r} has "
                            f"{rule.module_metric!r} in both audits")
        return
    for limit, sign, word in ((rule.max_drop, -1.0, "drop"), (rule.max_rise, 1.0, "rise")):
        if limit is None:
            continue
        bad = [(n, old[n], selected[n]) for n in shared if sign * (selected[n] - old[n]) > limit + _EPS]
        if bad:
            bad.sort(key=lambda item: -abs(item[2] - item[1]))
            listed = ", ".join(f"{_module(n)} {_num(a)} → {_num(b)}" for n, a, b in bad[:3])
            checks.check(False, f"{len(bad)} of {len(shared)} shared modules {word} more than max_{word} {limit:g}: "
                                f"{listed}{', …' if len(bad) > 3 else ''}")
            checks.details += [f"{_module(n)}: {rule.key} {_num(a)} → {_num(b)}" for n, a, b in bad]
        else:
            checks.check(True, f"no shared module's {rule.key} {word}s more than {limit:g} ({len(shared)} modules)")
    if rule.min_rank_correlation is not None:
        rho = spearman([old[n] for n in shared], [selected[n] for n in shared])
        if rho is None:
            checks.notes.append(f"rank correlation undefined over {len(shared)} shared modules (fewer than 3, or "
                                "constant values)")
        else:
            checks.check(rho >= rule.min_rank_correlation,
                         f"Spearman rho {rho:.3f} over {len(shared)} shared modules "
                         f"{'≥' if rho >= rule.min_rank_correlation else '<'} min_rank_correlation "
                         f"{rule.min_rank_correlation:g}")


def _evaluate(rule: Rule, ctx: _Context) -> RuleResult:
    if isinstance(rule, RoleRule):
        return evaluate_role_rule(rule, ctx.report, ctx.baseline)
    if isinstance(rule, FindingRule):
        return _finding_rule(rule, ctx)
    if isinstance(rule, MetricRule):
        return _metric_rule(rule, ctx)
    return _module_metric_rule(rule, ctx)


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
        return ", ".join(_module(n) for n in names[:5]) + (f", … ({len(names)} in all)" if len(names) > 5 else "")

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
    ctx = _Context(report=report, baseline=baseline, pairing=pairing, alpha=policy.alpha, counted=counted,
                   expired=expired)
    results = [_analyses_completed(ctx)]
    if policy.fail_on_severity != "none":
        results.append(_severity_rule(ctx, Severity(policy.fail_on_severity)))
    for rule in policy.rules:
        try:
            results.append(_evaluate(rule, ctx))
        except _Missing as missing:
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
