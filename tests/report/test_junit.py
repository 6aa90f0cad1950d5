"""JUnit XML of a verdict: it parses, has one test case per rule, and counts the right failures."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

from auditor.policy.evaluate import evaluate_policy
from auditor.policy.rules import FindingRule, MetricRule, Policy
from auditor.report.junit import render_junit
from auditor.schema.report import AuditReport
from tests.report.sample_report import EVIL_MODULE

POLICY = Policy(rules=(
    MetricRule(name="accurate", metric="performance.accuracy", min=0.95),
    MetricRule(name="fast enough", metric="performance.latency_ms", max=20.0),
    FindingRule(name="no markup in names", findings=["inventory.suspicious_name"], critical=False),
    MetricRule(name="gradients", metric="gradients.grad_norm", max=1.0, optional=True),
))


def test_junit_parses_and_counts_the_failures(gate_report: AuditReport) -> None:
    verdict = evaluate_policy(gate_report, POLICY, today=date(2025, 1, 1))
    root = ET.fromstring(render_junit(verdict))
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(verdict.results) == 6
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("6", "3", "1")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("6", "3", "1", "0")
    failures = {case.get("name"): case.find("failure") for case in cases if case.find("failure") is not None}
    assert set(failures) == {"every analysis completed", "no unwaived fail-severity findings", "accurate"}
    accurate = failures["accurate"]
    assert accurate is not None and accurate.get("message") == "performance.accuracy 0.912 < min 0.95"
    skipped = [case.get("name") for case in cases if case.find("skipped") is not None]
    assert skipped == ["gradients"]
    warned = next(case for case in cases if case.get("name") == "no markup in names")
    out = warned.find("system-out")
    assert out is not None and out.text is not None and out.text.startswith("warning: 1 matching finding")
    assert EVIL_MODULE in out.text  # the hostile module name survives as text


def test_characters_xml_cannot_hold_are_replaced(gate_report: AuditReport) -> None:
    policy = Policy(rules=(MetricRule(name="bell\x07 and nul\x00", metric="performance.accuracy", min=0.0),))
    root = ET.fromstring(render_junit(evaluate_policy(gate_report, policy)))
    names = [case.get("name") for case in root.iter("testcase")]
    assert "bell\ufffd and nul\ufffd" in names
