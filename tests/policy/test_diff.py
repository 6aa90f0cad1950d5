"""The release diff: nothing changes against itself; a degraded class shows, significant; other models are
compared on what they share."""

from __future__ import annotations

from auditor.schema.findings import Severity
from auditor.policy.diff import diff_reports
from auditor.schema.report import AuditReport
from tests.policy.builders import finding, make_report


def test_the_diff_of_an_audit_with_itself_shows_no_change(baseline_audit: AuditReport) -> None:
    diff = diff_reports(baseline_audit, baseline_audit)
    assert not diff.changed
    assert diff.headline() == "No change: every metric, class, finding and module number is the same."
    assert diff.paired
    assert all(m.delta == 0 for m in diff.metrics if m.delta is not None)
    accuracy = next(m for m in diff.metrics if m.metric == "performance.accuracy")
    assert (accuracy.test, accuracy.p_value, accuracy.worse, accuracy.better) == ("McNemar", 1.0, 0, 0)
    assert [c.delta for c in diff.classes] == [0.0, 0.0, 0.0]
    assert diff.findings_added == diff.findings_resolved == [] and diff.module_moves == []
    assert diff.modules_only_old == diff.modules_only_new == []
    assert all(r.rho is None or r.rho > 0.999 for r in diff.rank_correlations)
    shown = {(f.section, f.id) for f in diff.figures}
    assert shown == {(s.id, f.id) for s in baseline_audit.sections for f in s.figures}  # each, side by side
    assert {("inventory", "inventory.profile"), ("performance", "performance.confusion")} <= shown


def test_the_diff_shows_the_degraded_class_with_its_paired_test(baseline_audit: AuditReport,
                                                                 degraded_audit: AuditReport) -> None:
    diff = diff_reports(baseline_audit, degraded_audit)
    assert diff.changed and diff.paired and not diff.same_weights
    worst = min(diff.classes, key=lambda c: c.delta or 0.0)
    assert worst.name == "2" and worst.significant(diff.alpha) and worst.test == "McNemar"
    assert [c.name for c in diff.classes if c.significant(diff.alpha)] == ["2"]
    before, after = (a.metrics["performance.accuracy"] for a in (baseline_audit, degraded_audit))
    assert diff.headline() == (f"accuracy {before:.1%} → {after:.1%} (within noise); 1 class significantly worse (2); "
                               "0 findings added, 0 resolved.")
    outputs = [m for m in diff.module_moves if m.section == "inventory"]
    assert outputs and outputs[0].module == "2"  # of the output statistics, the head's moved most


def test_different_models_are_compared_on_shared_modules(baseline_audit: AuditReport,
                                                         deeper_audit: AuditReport) -> None:
    diff = diff_reports(baseline_audit, deeper_audit)
    assert diff.modules_shared == 4 and diff.modules_only_old == [] and diff.modules_only_new == ["3", "4"]
    assert {m.module for m in diff.module_moves} <= {"", "0", "1", "2"}


def test_findings_added_and_resolved_are_keyed_by_id_and_module() -> None:
    old = make_report(findings=[finding("inventory.dead_units", module="a"), finding("performance.weak_class")])
    new = make_report(findings=[finding("inventory.dead_units", module="b"), finding("performance.weak_class",
                                                                                     message="other words")])
    diff = diff_reports(old, new)
    assert [(f.id, f.module) for f in diff.findings_added] == [("inventory.dead_units", "b")]
    assert [(f.id, f.module) for f in diff.findings_resolved] == [("inventory.dead_units", "a")]
    assert diff.findings_unchanged == 1 and diff.findings_added[0].severity is Severity.WARN


def test_repeated_numbers_are_one_move_at_the_module_that_computes_them() -> None:
    modules = ["", "features", "features.relu", "features.pool"]
    before = {n: {"dead": 0.1} for n in modules[1:]}
    after = {n: {"dead": 0.4} for n in modules[1:]} | {"features.pool": {"dead": 0.40000001}}  # float32 sums
    diff = diff_reports(make_report(module_metrics=before, modules=modules),
                        make_report(module_metrics=after, modules=modules))
    (move,) = diff.module_moves
    assert move.module == "features.relu" and move.also == ["features.pool", "features"]
    assert move.delta == 0.30000000000000004 or abs(move.delta - 0.3) < 1e-12


def test_a_near_zero_spread_gives_no_absurd_move_and_the_real_change_ranks_first() -> None:
    """Four modules agreeing to 15 digits in the baseline (a spread of ~1e-16) and one of them moving in the
    7th digit: that was "5e14 spreads" and ranked above a key that really moved; now it is below 0.01."""
    modules = ["", "a", "b", "c", "d"]
    before = {n: {"flat": 0.5 + 1e-16 * i, "real": float(i)} for i, n in enumerate(modules[1:])}
    after = {n: dict(v) for n, v in before.items()}
    after["a"]["flat"] = 0.5 + 1e-6
    after["d"]["real"] = 6.0
    diff = diff_reports(make_report(module_metrics=before, modules=modules),
                        make_report(module_metrics=after, modules=modules))
    moves = {m.key: m for m in diff.module_moves}
    assert moves["flat"].score < 0.01
    assert 1.0 < moves["real"].score <= 2 * 4 ** 0.5  # the bound: twice the root of the shared modules
    assert [m.key for m in diff.module_moves] == ["real", "flat"]


def test_a_key_constant_in_the_baseline_still_moves_by_a_finite_spread() -> None:
    modules = ["", "a", "b", "c"]
    before = {n: {"dead": 0.0} for n in modules[1:]}
    after = {"a": {"dead": 0.0}, "b": {"dead": 0.0}, "c": {"dead": 0.25}}
    (move,) = diff_reports(make_report(module_metrics=before, modules=modules),
                           make_report(module_metrics=after, modules=modules)).module_moves
    assert move.module == "c" and abs(move.score - 6 / 5 ** 0.5) < 1e-9  # 0.25 over the std of five 0s and 0.25
