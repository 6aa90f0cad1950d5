"""Finding identity: a finding's key names its id, its module and what it is about, so two probe peaks on one
module (two properties) are two findings for waivers, `fail_on_new` and the release diff."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from auditor.policy.diff import diff_reports
from auditor.policy.evaluate import evaluate_policy
from auditor.policy.rules import FindingRule, Policy, Waiver
from auditor.report.io import load_report, save_report
from auditor.schema.findings import Finding, Severity
from auditor.schema.verdict import Status
from tests.policy.builders import make_report


def peak(prop: str, severity: str = "info") -> Finding:
    return Finding(id="probes.peak_layer", severity=Severity(severity), module="features.relu1",
                   message=f"{prop} peaks here", evidence={"property": prop, "accuracy": 0.9})


def test_two_findings_with_one_id_on_one_module_have_two_keys() -> None:
    keys = {peak("orientation").key, peak("frequency").key}
    assert keys == {"probes.peak_layer on features.relu1 [property=orientation]",
                    "probes.peak_layer on features.relu1 [property=frequency]"}
    model_wide = Finding(id="performance.near_chance", severity=Severity.WARN, module="", message="m")
    assert model_wide.key == "performance.near_chance on (model)"


def test_fail_on_new_sees_a_new_property_on_a_module_that_had_another() -> None:
    baseline = make_report(findings=[peak("orientation")])
    new = make_report(findings=[peak("orientation"), peak("frequency")])
    rule = FindingRule(findings=["probes.peak_layer"], fail_on_new=True)
    verdict = evaluate_policy(new, Policy(rules=(rule,)), baseline, today=date(2025, 6, 1))
    (failed,) = verdict.with_status(Status.FAIL)
    assert failed.message.startswith("1 new matching finding (at most 0 allowed): probes.peak_layer on "
                                     "features.relu1 [property=frequency]")


def test_the_diff_adds_and_resolves_by_key() -> None:
    diff = diff_reports(make_report(findings=[peak("orientation")]), make_report(findings=[peak("frequency")]))
    assert [f.key for f in diff.findings_added] == ["probes.peak_layer on features.relu1 [property=frequency]"]
    assert [f.key for f in diff.findings_resolved] == ["probes.peak_layer on features.relu1 [property=orientation]"]
    assert diff.findings_unchanged == 0


def test_a_waiver_with_a_key_waives_that_finding_only() -> None:
    findings = [peak("orientation", "fail"), peak("frequency", "fail")]
    waiver = Waiver(finding="probes.peak_layer", key="probes.peak_layer on features.relu1 [property=orientation]",
                    reason="known", expires=date(2025, 6, 30))
    verdict = evaluate_policy(make_report(findings=findings), Policy(waivers=(waiver,)), today=date(2025, 6, 1))
    assert [w.key for w in verdict.waived] == ["probes.peak_layer on features.relu1 [property=orientation]"]
    assert not verdict.passed
    assert "[property=frequency]" in verdict.with_status(Status.FAIL)[0].message


def test_an_audit_written_before_keys_loads_with_keys_derived(tmp_path: Path) -> None:
    save_report(make_report(findings=[peak("orientation")]), tmp_path, formats=("json",))
    raw = json.loads((tmp_path / "audit.json").read_text())
    for finding in raw["findings"]:
        del finding["key"]
    (tmp_path / "audit.json").write_text(json.dumps(raw))
    (loaded,) = load_report(tmp_path).findings
    assert loaded.key == "probes.peak_layer on features.relu1 [property=orientation]"
