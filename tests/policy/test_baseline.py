"""Against the last release: paired significance (McNemar) on the same data, unpaired otherwise, different
models compared on what they share, and new findings."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from auditor.errors import PolicyError
from auditor.policy.evaluate import evaluate_policy
from auditor.policy.rules import FindingRule, MetricRule, ModuleMetricRule, Policy
from auditor.policy.stats import fisher, holm, mcnemar, spearman
from auditor.schema.verdict import Status
from auditor.schema.report import AuditReport
from tests.policy.builders import finding, make_report
from tests.policy.subjects import flips, recall

REGRESSION = Policy(rules=(
    MetricRule(name="accurate", metric="performance.accuracy", min=0.8),
    MetricRule(name="accuracy does not regress", metric="performance.accuracy", max_drop=0.01),
    MetricRule(name="no class regresses", metric="performance.accuracy", max_class_drop=0.05),
))


def test_a_model_with_one_class_degraded_fails_only_against_the_baseline(
        baseline_audit: AuditReport, degraded_audit: AuditReport) -> None:
    alone = evaluate_policy(degraded_audit, REGRESSION)
    assert alone.passed  # accurate enough on its own
    assert [r.message for r in alone.with_status(Status.SKIPPED)] == ["baseline checks not run: no baseline"] * 2
    verdict = evaluate_policy(degraded_audit, REGRESSION, baseline_audit)
    assert verdict.exit_code == 1
    assert verdict.comparison.startswith("paired on the same 300 samples")
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.name == "no class regresses"
    before, after = recall(baseline_audit, 2), recall(degraded_audit, 2)
    wrong, right = flips(baseline_audit, degraded_audit, label=2)
    assert wrong >= 10 and right == 0  # pushing class 2 down only loses class 2's samples
    p = min(3 * binomtest(wrong, wrong + right, 0.5).pvalue, 1.0)  # Holm over 3 classes: the smallest p × 3
    assert failed.message == f"1 class dropped more than max_class_drop 0.05: '2' −{(before - after) * 100:.1f} pts"
    assert failed.details[0].startswith(f"class '2': {before:.1%} → {after:.1%} (McNemar p = {p:.2g} Holm-adjusted; "
                                        f"{wrong} now wrong, {right} now right")
    # Overall accuracy fell too, but the samples of classes 0 and 1 it no longer mistakes for class 2 make up
    # for much of it, and McNemar's test cannot tell the rest from noise on 300 samples.
    overall = next(r for r in verdict.results if r.name == "accuracy does not regress")
    assert overall.status is Status.PASS
    wrong, right = flips(baseline_audit, degraded_audit)
    p = binomtest(wrong, wrong + right, 0.5).pvalue
    assert p >= 0.05 and wrong > right
    assert f"but within noise (McNemar p = {p:.2g}: {wrong} samples now wrong, {right} now right ≥ alpha 0.05)" \
        in overall.message


def test_a_tiny_random_perturbation_is_not_called_a_regression(
        baseline_audit: AuditReport, perturbed_audit: AuditReport) -> None:
    drop = baseline_audit.metrics["performance.accuracy"] - perturbed_audit.metrics["performance.accuracy"]
    assert 0.01 < drop < 0.02, "the perturbation should cost one to two points, or the test shows nothing"
    strict = Policy(rules=(MetricRule(metric="performance.accuracy", max_drop=0.0, max_class_drop=0.0),))
    verdict = evaluate_policy(perturbed_audit, strict, baseline_audit)
    assert verdict.passed, verdict.results
    (rule,) = [r for r in verdict.results if r.kind == "metric"]
    wrong, right = flips(baseline_audit, perturbed_audit)
    p = binomtest(wrong, wrong + right, 0.5).pvalue
    assert 0.05 <= p < 0.2  # the next test needs a p between the two significance levels
    assert f"within noise (McNemar p = {p:.2g}: {wrong} samples now wrong, {right} now right" in rule.message
    assert "over it but within noise" in rule.message


def test_a_significance_level_per_rule(baseline_audit: AuditReport, perturbed_audit: AuditReport) -> None:
    lax = Policy(rules=(MetricRule(metric="performance.accuracy", max_drop=0.0, alpha=0.2),))
    assert not evaluate_policy(perturbed_audit, lax, baseline_audit).passed  # 0.05 ≤ p < 0.2 (the test above)


def test_audits_on_different_data_are_compared_unpaired(baseline_audit: AuditReport,
                                                         other_data_audit: AuditReport) -> None:
    assert baseline_audit.metadata.data_fingerprint != other_data_audit.metadata.data_fingerprint
    verdict = evaluate_policy(other_data_audit, REGRESSION, baseline_audit)
    assert verdict.comparison.startswith("unpaired: the audits ran on different data (fingerprints ")
    assert verdict.passed


def test_a_drop_on_other_data_is_judged_by_fishers_test() -> None:
    base = make_report(metrics={"performance.accuracy": 0.9, "performance.samples": 300.0}, fingerprint="a" * 64)
    worse = make_report(metrics={"performance.accuracy": 0.8, "performance.samples": 300.0}, fingerprint="b" * 64)
    rule = Policy(rules=(MetricRule(metric="performance.accuracy", max_drop=0.02),))
    verdict = evaluate_policy(worse, rule, base)
    assert verdict.comparison == "unpaired: the audits ran on different data (fingerprints aaaaaaaaaaaa… and bbbbbbbbbbbb…)"
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.message == ("performance.accuracy 0.9 → 0.8, drop 0.1 (10.0 pts) > max_drop 0.02 (Fisher p = 0.00084, "
                              "unpaired)")


def test_an_audit_from_before_fingerprints_is_unpaired() -> None:
    base = make_report(predicted=[0, 1, 2], labels=[0, 1, 2], fingerprint=None)
    verdict = evaluate_policy(make_report(predicted=[0, 1, 2], labels=[0, 1, 2]), REGRESSION, base)
    assert verdict.comparison == ("unpaired: the baseline audit records no data fingerprint (written before auditor "
                                  "1.2 schema)")


def test_different_models_are_compared_on_the_modules_they_share(baseline_audit: AuditReport,
                                                                 deeper_audit: AuditReport) -> None:
    rank = Policy(rules=(ModuleMetricRule(module_metric="inventory.output_std", min_rank_correlation=0.0),))
    verdict = evaluate_policy(deeper_audit, rank, baseline_audit)
    assert verdict.notes == ["the models differ: modules compared on the 4 they share; only in this audit: 3, 4"]
    assert "over 4 shared modules" in verdict.results[-1].message


def test_min_rank_correlation_fails_when_the_modules_change_order() -> None:
    before = {"a": {"grad": 1.0}, "b": {"grad": 2.0}, "c": {"grad": 3.0}, "d": {"grad": 4.0}}
    after = {"a": {"grad": 4.0}, "b": {"grad": 3.0}, "c": {"grad": 2.0}, "d": {"grad": 1.1}}
    rule = Policy(rules=(ModuleMetricRule(module_metric="inventory.grad", min_rank_correlation=0.5, max_rise=5.0),))
    verdict = evaluate_policy(make_report(module_metrics=after, modules=list(after)), rule,
                              make_report(module_metrics=before, modules=list(before)))
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.message == "Spearman rho -1.000 over 4 shared modules < min_rank_correlation 0.5"


def test_module_max_drop_and_max_rise_name_the_modules() -> None:
    before = {"a": {"dead": 0.1}, "b": {"dead": 0.2}}
    after = {"a": {"dead": 0.5}, "b": {"dead": 0.2}}
    rule = Policy(rules=(ModuleMetricRule(module_metric="inventory.dead", max_rise=0.1),))
    verdict = evaluate_policy(make_report(module_metrics=after), rule, make_report(module_metrics=before))
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.message == "1 of 2 shared modules rise more than max_rise 0.1: a 0.1 → 0.5"


def test_fail_on_new_counts_only_findings_the_baseline_did_not_have() -> None:
    old = make_report(findings=[finding("inventory.dead_units", module="features.relu")])
    new = make_report(findings=[finding("inventory.dead_units", module="features.relu"),
                                finding("inventory.dead_units", module="head")])
    rule = Policy(rules=(FindingRule(findings=["*"], severity="warn", fail_on_new=True),))
    verdict = evaluate_policy(new, rule, old)
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.message == "1 new matching finding (at most 0 allowed): inventory.dead_units on head"
    assert evaluate_policy(new, rule).with_status(Status.SKIPPED)[0].message == \
        "not checked: fail_on_new needs a baseline (--baseline)"


def test_a_baseline_without_the_metric_skips_the_comparison_not_the_audit() -> None:
    base = make_report(metrics={"inventory.modules": 4.0})
    new = make_report(metrics={"performance.accuracy": 0.9})
    verdict = evaluate_policy(new, Policy(rules=(MetricRule(metric="performance.accuracy", min=0.5, max_drop=0.0),)),
                              base)
    assert verdict.results[-1].message == ("performance.accuracy 0.9 ≥ min 0.5 (baseline checks not run: the "
                                           "baseline has no performance.accuracy)")
    with pytest.raises(PolicyError):  # but the audit itself must have it
        evaluate_policy(base, Policy(rules=(MetricRule(metric="performance.accuracy", max_drop=0.0),)), new)


def test_the_statistics_against_hand_computed_values() -> None:
    import numpy as np

    old = np.array([1, 1, 1, 1, 1, 1, 0, 1], bool)
    new = np.array([0, 0, 0, 0, 0, 0, 1, 1], bool)
    test = mcnemar(old, new)
    assert (test.worse, test.better) == (6, 1)
    assert test.p_value == pytest.approx(2 * (7 + 1) / 2**7)  # two-sided exact binomial
    assert mcnemar(old, old).p_value == 1.0
    assert fisher(90, 100, 90, 100).p_value == pytest.approx(1.0)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None
