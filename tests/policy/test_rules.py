"""Policies as data: reading and validating TOML, and judging findings, report metrics and module metrics."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest

from auditor.errors import PolicyError
from auditor.policy.defaults import DEFAULT_POLICY_TOML
from auditor.policy.evaluate import evaluate_policy
from auditor.policy.load import load_policy, parse_policy
from auditor.policy.rules import FindingRule, MetricRule, ModuleMetricRule, Policy
from auditor.schema.verdict import Status
from auditor.schema.report import AuditReport
from tests.policy.builders import finding, make_report


def policy(text: str) -> Policy:
    return parse_policy(tomllib.loads(text), source="policy.toml")


def result(verdict_results: list, name: str):  # type: ignore[no-untyped-def]
    return next(r for r in verdict_results if r.name == name)


# --- the golden cases ----------------------------------------------------------------------------------

def test_a_policy_that_passes(baseline_audit: AuditReport) -> None:
    verdict = evaluate_policy(baseline_audit, policy('''
        [[rule]]
        name = "accurate"
        metric = "performance.accuracy"
        min = 0.8
        [[rule]]
        findings = ["inventory.*"]
        severity = "warn"
        [[rule]]
        module_metric = "inventory.dead_fraction"
        max = 0.5
    '''))
    assert verdict.passed and verdict.exit_code == 0
    assert [r.status for r in verdict.results] == [Status.PASS] * 5
    accuracy = baseline_audit.metrics["performance.accuracy"]
    assert f"performance.accuracy {accuracy:.4g} ≥ min 0.8" in result(verdict.results, "accurate").message
    assert verdict.headline == "All 5 rules passed."


def test_a_policy_that_fails_on_a_finding() -> None:
    report = make_report(findings=[finding("inventory.non_finite", "fail", "features.conv", "NaN everywhere"),
                                   finding("inventory.dead_units", "warn", "features.relu")])
    verdict = evaluate_policy(report)  # the built-in default policy
    assert not verdict.passed and verdict.exit_code == 1
    failed = verdict.with_status(Status.FAIL)
    assert [r.name for r in failed] == ["no unwaived fail-severity findings"]
    assert failed[0].message == "1 finding at fail or worse: inventory.non_finite on features.conv"
    assert failed[0].details == ["fail inventory.non_finite on features.conv: NaN everywhere"]


def test_warnings_never_fail_the_default_policy() -> None:
    report = make_report(findings=[finding("inventory.dead_units", "warn", "features.relu")])
    assert evaluate_policy(report).passed


def test_a_policy_that_fails_on_a_metric(baseline_audit: AuditReport) -> None:
    verdict = evaluate_policy(baseline_audit, policy('''
        [[rule]]
        metric = "performance.accuracy"
        min = 0.95
    '''))
    assert verdict.exit_code == 1
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.name == "performance.accuracy ≥ 0.95"
    assert failed.message == f"performance.accuracy {baseline_audit.metrics['performance.accuracy']:.4g} < min 0.95"


def test_a_failed_analysis_fails_the_check_whatever_the_policy() -> None:
    report = make_report(metrics={"performance.accuracy": 0.9}, failed="attribution")
    verdict = evaluate_policy(report, policy('fail_on_severity = "none"'))
    assert verdict.exit_code == 1
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.name == "every analysis completed"
    assert failed.message == "1 of 3 analyses failed: attribution"
    assert "RuntimeError: boom" in failed.details[0]


def test_a_non_optional_rule_on_a_missing_metric_is_bad_input() -> None:
    report = make_report(metrics={"inventory.modules": 5.0}, not_run={"performance": "the audit data has no labels"})
    with pytest.raises(PolicyError, match=r"rule 'performance.accuracy ≥ 0.9': the audit has no metric "
                                          r"'performance.accuracy': performance did not run \(the audit data has "
                                          r"no labels\)\. Mark the rule optional = true"):
        evaluate_policy(report, Policy(rules=(MetricRule(metric="performance.accuracy", min=0.9),)))


def test_an_optional_rule_on_a_missing_metric_is_skipped_and_reported() -> None:
    report = make_report(metrics={"inventory.modules": 5.0}, not_run={"performance": "the audit data has no labels"})
    verdict = evaluate_policy(report, Policy(rules=(
        MetricRule(metric="performance.accuracy", min=0.9, optional=True),
        ModuleMetricRule(module_metric="gradients.grad_norm", max=1.0, optional=True))))
    assert verdict.passed
    skipped = verdict.with_status(Status.SKIPPED)
    assert [r.message for r in skipped] == [
        "skipped (optional): the audit has no metric 'performance.accuracy': performance did not run "
        "(the audit data has no labels)",
        "skipped (optional): the audit has no per-module metric 'gradients.grad_norm': it has no gradients "
        "section (sections: inventory)",
    ]
    assert verdict.headline == "2 of 4 rules passed, 2 skipped."


def test_a_missing_metric_in_a_section_that_ran_lists_what_it_has() -> None:
    report = make_report(metrics={"performance.accuracy": 0.9, "performance.ece": 0.1})
    with pytest.raises(PolicyError, match="its performance metrics are performance.accuracy, performance.ece"):
        evaluate_policy(report, Policy(rules=(MetricRule(metric="performance.acuracy", min=0.5),)))


# --- findings rules ------------------------------------------------------------------------------------

def test_finding_rules_match_patterns_severity_floors_and_modules() -> None:
    report = make_report(findings=[
        finding("inventory.dead_units", "warn", "features.relu"), finding("inventory.dead_units", "warn", "head"),
        finding("inventory.reused_module", "info", "features.conv"), finding("performance.weak_class", "warn")])
    verdict = evaluate_policy(report, Policy(rules=(
        FindingRule(name="no dead features", findings=["inventory.dead_units"], modules="features.*"),
        FindingRule(name="few warnings", findings=["*"], severity="warn", max_count=3),
        FindingRule(name="no inventory at all", findings="inventory.*", critical=False))))
    dead = result(verdict.results, "no dead features")
    assert dead.status is Status.FAIL
    assert dead.message == "1 matching finding (at most 0 allowed): inventory.dead_units on features.relu"
    assert result(verdict.results, "few warnings").status is Status.PASS  # 3 warnings, the info one is below
    assert result(verdict.results, "no inventory at all").status is Status.WARN


def test_fail_on_severity_warn_fails_on_warnings() -> None:
    report = make_report(findings=[finding("performance.weak_class", "warn")])
    verdict = evaluate_policy(report, policy('fail_on_severity = "warn"'))
    assert [r.name for r in verdict.with_status(Status.FAIL)] == ["no unwaived findings at warn or worse"]


# --- module metrics ------------------------------------------------------------------------------------

MODULE_METRICS = {"features.conv": {"dead_fraction": 0.0, "output_std": 2.0},
                  "features.relu": {"dead_fraction": 0.6, "output_std": 1.0},
                  "head": {"dead_fraction": 0.9, "output_std": 3.0}}


def test_module_metric_rules_check_every_module_matching_the_pattern() -> None:
    report = make_report(module_metrics=MODULE_METRICS)
    verdict = evaluate_policy(report, Policy(rules=(
        ModuleMetricRule(name="features alive", module_metric="inventory.dead_fraction", modules="features.*", max=0.5),
        ModuleMetricRule(name="scales", module_metric="inventory.output_std", min=0.5, max=5.0))))
    alive = result(verdict.results, "features alive")
    assert alive.status is Status.FAIL
    assert alive.message == "1 of 2 modules outside ≤ 0.5: features.relu 0.6"  # head is not a feature
    assert result(verdict.results, "scales").message == "all 3 modules ≥ 0.5 and ≤ 5 (highest 3 at head)"


def test_a_module_pattern_that_matches_nothing_is_bad_input() -> None:
    report = make_report(module_metrics=MODULE_METRICS)
    with pytest.raises(PolicyError, match="no module matching 'encoder.*' has 'inventory.dead_fraction'"):
        evaluate_policy(report, Policy(rules=(
            ModuleMetricRule(module_metric="inventory.dead_fraction", modules="encoder.*", max=0.5),)))
    with pytest.raises(PolicyError, match="the inventory section has no per-module 'dead_frac' "
                                          r"\(it has: dead_fraction, output_std\)"):
        evaluate_policy(report, Policy(rules=(ModuleMetricRule(module_metric="inventory.dead_frac", max=0.5),)))


# --- reading and validating ----------------------------------------------------------------------------

def test_the_init_policy_reads_and_every_rule_on_an_analysis_that_may_not_run_is_optional() -> None:
    parsed = policy(DEFAULT_POLICY_TOML)
    assert parsed.fail_on_severity == "fail" and parsed.alpha == 0.05
    assert {type(r) for r in parsed.rules} == {FindingRule, MetricRule, ModuleMetricRule}
    assert all(r.optional for r in parsed.rules if not isinstance(r, FindingRule))


def test_an_unlabelled_audit_passes_the_init_policy() -> None:
    report = make_report(metrics={"inventory.modules": 5.0}, not_run={"performance": "no labels"})
    verdict = evaluate_policy(report, policy(DEFAULT_POLICY_TOML))
    assert verdict.passed
    assert {r.name for r in verdict.with_status(Status.SKIPPED)} >= {"accuracy well above chance", "no class regresses"}


def test_the_init_policy_warns_when_the_audit_labels_are_not_linearly_decodable() -> None:
    report = make_report(metrics={"inventory.modules": 5.0}, findings=[finding("probes.no_signal")])
    verdict = evaluate_policy(report, policy(DEFAULT_POLICY_TOML))
    assert verdict.passed  # a warning, not a failed release
    assert "the audit labels stay linearly decodable" in {r.name for r in verdict.with_status(Status.WARN)}
    quiet = make_report(metrics={"inventory.modules": 5.0}, findings=[finding("probes.no_signal", "info")])
    assert "the audit labels stay linearly decodable" in {  # a built-in probe set only informs
        r.name for r in evaluate_policy(quiet, policy(DEFAULT_POLICY_TOML)).with_status(Status.PASS)}


@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\nmetric = "performance.accuracy"\nmaxdrop = 0.1',
     "policy.toml: rule 1: unknown key 'maxdrop'"),
    ('[[rule]]\nname = "acc"\nmetric = "performance.accuracy"\nmin = "high"',
     "policy.toml: rule 1 ('acc'): 'min': Input should be a valid number, unable to parse string as a number "
     "(got 'high')"),
    ('[[rule]]\nfindings = ["*"]\n[[rule]]\nfindings = ["*"]\nseverity = "fatal"',
     "policy.toml: rule 2: 'severity': Input should be 'info', 'warn' or 'fail' (got 'fatal')"),
    ('[[rules]]\nmetric = "performance.accuracy"\nmin = 0.5',
     "policy.toml: unknown key 'rules' (write one [[rule]] table per rule)"),
    ('[rule]\nmetric = "performance.accuracy"\nmin = 0.5',
     "policy.toml: 'rule' must be a list of tables: write [[rule]], not [rule]"),
    ('[[rule]]\nmetric = "performance.accuracy"\nfindings = ["*"]\nmin = 0.5',
     "policy.toml: rule 1: a rule names exactly one of findings, metric, module_metric; it has findings and metric"),
    ('[[rule]]\nmin = 0.5', "a rule names exactly one of findings, metric, module_metric; its keys are min"),
    ('[[rule]]\nmetric = "accuracy"\nmin = 0.5', "metric 'accuracy' must be '<analysis id>.<name>'"),
    ('[[rule]]\nmetric = "performance.accuracy"', "a metric rule needs at least one of min, max, max_drop"),
    ('[[rule]]\nmetric = "performance.ece"\nmax_class_drop = 0.1', "max_class_drop applies to metric "
                                                                    "'performance.accuracy'"),
    ('[[rule]]\nmodule_metric = "inventory.dead_fraction"\nmin_rank_correlation = 2',
     "'min_rank_correlation': Input should be less than or equal to 1 (got 2)"),
    ('alpha = 1.5', "policy.toml: 'alpha': Input should be less than 1 (got 1.5)"),
    ('[[waiver]]\nfinding = "inventory.dead_units"\nexpires = 2026-01-01',
     "policy.toml: waiver 1: missing key 'reason'"),
    ('[[waiver]]\nfinding = "inventory.dead_units"\nreason = "ok"\nexpires = "someday"',
     "policy.toml: waiver 1: 'expires': Input should be a valid date"),
    ('[[waiver]]\nfinding = "x"\nreason = "  "\nexpires = 2026-01-01', "waiver 1: 'reason': a waiver needs a reason"),
])
def test_a_malformed_policy_is_an_error_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        policy(text)
    assert message in str(raised.value)


def test_load_policy_reports_missing_files_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="is not valid TOML"):
        load_policy(bad)
    good = tmp_path / "policy.toml"
    good.write_text(DEFAULT_POLICY_TOML, encoding="utf-8")
    loaded = load_policy(good)
    digest = hashlib.sha256(DEFAULT_POLICY_TOML.encode()).hexdigest()[:12]
    assert loaded.source == f"…/{tmp_path.name}/policy.toml (sha256 {digest})"  # no local path in a verdict
