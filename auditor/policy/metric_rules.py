"""The metric rules of a policy: a report metric (`metric`) and a per-module one (`module_metric`), by
thresholds and against the baseline (significant drops, class drops, rank correlation)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from auditor.policy.checks import EPS, Checks, Missing, RuleContext, num, points
from auditor.policy.diff import ACCURACY, accuracy_delta, class_deltas, module_values
from auditor.policy.rules import MetricRule, ModuleMetricRule
from auditor.policy.stats import spearman
from auditor.schema.report import AuditReport
from auditor.schema.verdict import RuleResult


def missing_from(report: AuditReport, section_id: str, what: str) -> Missing:
    if section_id in report.not_run:
        return Missing(f"the audit has no {what}: {section_id} did not run ({report.not_run[section_id]})")
    section = next((s for s in report.sections if s.id == section_id), None)
    if section is not None and section.error is not None:
        return Missing(f"the audit has no {what}: the {section_id} analysis failed")
    if section is None:
        return Missing(f"the audit has no {what}: it has no {section_id} section "
                        f"(sections: {', '.join(s.id for s in report.sections) or 'none'})")
    return Missing(f"the audit has no {what}")


def metric_rule(rule: MetricRule, ctx: RuleContext) -> RuleResult:
    report, metric = ctx.report, rule.metric
    if metric not in report.metrics:
        section = metric.split(".", 1)[0]
        missing = missing_from(report, section, f"metric {metric!r}")
        names = sorted(k for k in report.metrics if k.startswith(f"{section}."))
        raise Missing(f"{missing}; its {section} metrics are {', '.join(names)}") if names else missing
    value = report.metrics[metric]
    checks = Checks()
    if rule.min is not None:
        checks.check(value >= rule.min, f"{metric} {num(value)} {'≥' if value >= rule.min else '<'} min {rule.min:g}")
    if rule.max is not None:
        checks.check(value <= rule.max, f"{metric} {num(value)} {'≤' if value <= rule.max else '>'} max {rule.max:g}")
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
        moved = f"{metric} {num(old)} → {num(value)}, {word} {num(max(change, 0.0))}"
        if metric == ACCURACY:  # in points too, as the class drops beside it are
            moved += f" ({points(max(change, 0.0))})"
        if change <= limit + EPS:
            checks.check(True, f"{moved} ≤ max_{word} {limit:g}")
        elif significant:
            checks.check(False, f"{moved} > max_{word} {limit:g}" + (f" ({test_line})" if test_line else ""))
        else:
            checks.check(True, f"{moved} > max_{word} {limit:g}, but within noise ({test_line} ≥ alpha {alpha:g})")
    if rule.max_class_drop is not None:
        _class_drops(rule.max_class_drop, alpha, ctx, checks)
    return checks.result(rule, "metric")


def _class_drops(limit: float, alpha: float, ctx: RuleContext, checks: Checks) -> None:
    assert ctx.baseline is not None and ctx.pairing is not None
    classes = [c for c in class_deltas(ctx.baseline, ctx.report, ctx.pairing) if c.delta is not None]
    if not classes:
        checks.notes.append("class drops not checked: no per-class accuracy in both audits")
        return
    over = [c for c in classes if c.delta is not None and -c.delta > limit + EPS]
    real = [c for c in over if c.p_holm is None or c.p_holm < alpha]
    for c in sorted(over, key=lambda c: c.delta or 0.0):
        noise = "" if c in real else f", within noise at alpha {alpha:g}"
        checks.details.append(f"class {c.name!r}: {c.old:.1%} → {c.new:.1%} ({c.test_line()}{noise})")
    worst = min(classes, key=lambda c: c.delta or 0.0)
    if real:
        names = ", ".join(f"{c.name!r} {points(c.delta)}" for c in real[:4]) + (", …" if len(real) > 4 else "")
        checks.check(False, f"{len(real)} class{'es' * (len(real) != 1)} dropped more than max_class_drop {limit:g}: "
                            f"{names}")
    else:
        extra = f"; {len(over)} over it but within noise" if over else ""
        checks.check(True, f"largest class drop {points(min(worst.delta or 0.0, 0.0))} ({worst.name!r}), "
                           f"max_class_drop {limit:g}{extra}")


def module_metric_rule(rule: ModuleMetricRule, ctx: RuleContext) -> RuleResult:
    report = ctx.report
    values = module_values(report, rule.section, rule.key)
    section = next((s for s in report.sections if s.id == rule.section), None)
    if values is None or section is None or section.error is not None:
        raise missing_from(report, rule.section, f"per-module metric {rule.module_metric!r}")
    if not values:
        keys = sorted({k for v in section.module_metrics.values() for k in v})
        raise Missing(f"the {rule.section} section has no per-module {rule.key!r} (it has: {', '.join(keys) or 'none'})")
    selected = {name: v for name, v in values.items() if fnmatchcase(name, rule.modules)}
    if not selected:
        raise Missing(f"no module matching {rule.modules!r} has {rule.module_metric!r} ({len(values)} modules have it)")
    checks = Checks()
    if rule.min is not None or rule.max is not None:
        low = -float("inf") if rule.min is None else rule.min
        high = float("inf") if rule.max is None else rule.max
        bad = sorted(((n, v) for n, v in selected.items() if not low <= v <= high), key=lambda item: item[1])
        bounds = " and ".join(p for p in (f"≥ {rule.min:g}" if rule.min is not None else "",
                                          f"≤ {rule.max:g}" if rule.max is not None else "") if p)
        if bad:
            listed = ", ".join(f"{module_label(n)} {num(v)}" for n, v in bad[:4]) + (", …" if len(bad) > 4 else "")
            checks.check(False, f"{len(bad)} of {len(selected)} modules outside {bounds}: {listed}")
            checks.details += [f"{module_label(n)}: {rule.key} = {num(v)}" for n, v in bad]
        else:
            parents = {row.parent for row in report.modules}  # on a tie, name the module, not its container
            top = max(selected.items(), key=lambda item: (item[1], item[0] not in parents))
            checks.check(True, f"all {len(selected)} modules {bounds} (highest {num(top[1])} at {module_label(top[0])})")
    baseline_checks = rule.max_drop is not None or rule.max_rise is not None or rule.min_rank_correlation is not None
    if baseline_checks:
        _module_baseline(rule, selected, ctx, checks)
    return checks.result(rule, "module_metric")


def module_label(name: str) -> str:
    return name or "(model)"


def _module_baseline(rule: ModuleMetricRule, selected: dict[str, float], ctx: RuleContext, checks: Checks) -> None:
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
        bad = [(n, old[n], selected[n]) for n in shared if sign * (selected[n] - old[n]) > limit + EPS]
        if bad:
            bad.sort(key=lambda item: -abs(item[2] - item[1]))
            listed = ", ".join(f"{module_label(n)} {num(a)} → {num(b)}" for n, a, b in bad[:3])
            checks.check(False, f"{len(bad)} of {len(shared)} shared modules {word} more than max_{word} {limit:g}: "
                                f"{listed}{', …' if len(bad) > 3 else ''}")
            checks.details += [f"{module_label(n)}: {rule.key} {num(a)} → {num(b)}" for n, a, b in bad]
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
