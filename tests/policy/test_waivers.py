"""Waivers: a finding accepted until a date, for a reason; an expired waiver no longer waives, and says so."""

from __future__ import annotations

from datetime import date

from auditor.policy.evaluate import evaluate_policy
from auditor.policy.rules import Policy, Waiver
from auditor.schema.verdict import Status, WaivedFinding
from tests.policy.builders import finding, make_report

NAN = finding("inventory.non_finite", "fail", "features.conv", "NaN in features.conv")
TODAY = date(2025, 6, 1)


def waiver(expires: date, module: str | None = "features.conv", id: str = "inventory.non_finite") -> Waiver:
    return Waiver(finding=id, module=module, reason="known: fixed upstream in ML-42", expires=expires)


def test_a_waived_finding_does_not_fail_the_check_and_is_listed() -> None:
    verdict = evaluate_policy(make_report(findings=[NAN]), Policy(waivers=(waiver(date(2025, 6, 30)),)), today=TODAY)
    assert verdict.passed and verdict.exit_code == 0
    assert verdict.waived == [WaivedFinding(id="inventory.non_finite", module="features.conv",
                                            reason="known: fixed upstream in ML-42", expires=date(2025, 6, 30),
                                            key="inventory.non_finite on features.conv")]
    assert verdict.results[1].message == "no finding at fail or worse (1 waived)"
    assert verdict.notes == []


def test_a_waiver_holds_through_its_expiry_day() -> None:
    assert evaluate_policy(make_report(findings=[NAN]), Policy(waivers=(waiver(TODAY),)), today=TODAY).passed


def test_an_expired_waiver_no_longer_waives_and_says_so() -> None:
    verdict = evaluate_policy(make_report(findings=[NAN]), Policy(waivers=(waiver(date(2025, 5, 31)),)), today=TODAY)
    assert not verdict.passed and verdict.exit_code == 1 and verdict.waived == []
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.details == ["fail inventory.non_finite on features.conv: NaN in features.conv "
                              "[waiver expired 2025-05-31]"]
    assert verdict.notes == ["the waiver for inventory.non_finite on features.conv expired on 2025-05-31 and no "
                             "longer waives it (reason was: known: fixed upstream in ML-42)"]


def test_a_waiver_for_one_module_does_not_cover_another() -> None:
    other = finding("inventory.non_finite", "fail", "head", "NaN in head")
    verdict = evaluate_policy(make_report(findings=[NAN, other]), Policy(waivers=(waiver(date(2030, 1, 1)),)),
                              today=TODAY)
    assert [w.module for w in verdict.waived] == ["features.conv"]
    assert verdict.with_status(Status.FAIL)[0].message == "1 finding at fail or worse: inventory.non_finite on head"
    any_module = evaluate_policy(make_report(findings=[NAN, other]),
                                 Policy(waivers=(waiver(date(2030, 1, 1), module=None),)), today=TODAY)
    assert any_module.passed and len(any_module.waived) == 2


def test_a_waiver_that_matches_nothing_is_noted() -> None:
    verdict = evaluate_policy(make_report(), Policy(waivers=(waiver(date(2030, 1, 1)),)), today=TODAY)
    assert verdict.passed
    assert verdict.notes == ["the waiver for inventory.non_finite on features.conv (until 2030-01-01) matched no "
                             "finding: remove it"]


def test_a_failed_analysis_can_be_waived() -> None:
    report = make_report(failed="attribution")
    accepted = Waiver(finding="attribution.analysis_failed", reason="attribution is flaky on CPU (ML-7)",
                      expires=date(2030, 1, 1))
    assert not evaluate_policy(report, today=TODAY).passed
    assert evaluate_policy(report, Policy(waivers=(accepted,)), today=TODAY).passed
