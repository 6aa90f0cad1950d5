"""When a release policy was evaluated, its result is the headline everywhere: audit.json's verdict, the HTML
banner, the diff's first page and the terminal. A blocked release never reads "release with care"."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from auditor.policy.diff import diff_reports
from auditor.policy.evaluate import evaluate_policy
from auditor.policy.rules import FindingRule, Policy
from auditor.report.diff_html import diff_status, render_diff_html
from auditor.report.html import render_html
from auditor.report.io import load_report, save_report
from auditor.report.markdown import render_diff_markdown
from auditor.schema.report import AuditReport
from tests.policy.builders import finding, make_report

TODAY = date(2025, 6, 1)


def _warned() -> AuditReport:
    """Only warnings, so the findings alone would say "release with care"."""
    return make_report(findings=[finding("inventory.dead_units", "warn", "features.relu")])


def _blocked() -> AuditReport:
    report = _warned()
    policy = Policy(rules=(FindingRule(findings=["inventory.*"], severity="warn"),))
    return report.with_policy(evaluate_policy(report, policy, today=TODAY))


def test_a_failed_gate_is_the_verdict_of_the_audit() -> None:
    assert _warned().verdict.status == "warn"
    report = _blocked()
    assert report.policy is not None and not report.policy.passed
    assert report.verdict.status == "fail" and report.verdict.decided_by == "policy"
    assert report.verdict.headline.startswith("Release blocked, the gate failed (exit 1): 1 of 3 rules failed")
    assert "care" not in report.verdict.headline.lower()
    assert report.verdict.counts == _warned().verdict.counts  # the findings' counts stay beside it


def test_a_passed_gate_says_so_and_keeps_the_warnings_in_view() -> None:
    report = _warned()
    judged = report.with_policy(evaluate_policy(report, Policy(), today=TODAY))
    assert judged.verdict.status == "pass"
    assert judged.verdict.headline.startswith("Release gate passed:")
    assert judged.verdict.headline.endswith("1 warning to review.")


def test_the_html_banner_shows_the_gate(tmp_path: Path) -> None:
    page = render_html(_blocked())
    banner = page[page.index('<section id="verdict"'):page.index("</section>", page.index('<section id="verdict"'))]
    assert 'class="verdict verdict-fail"' in banner and "Release blocked" in banner
    assert "Release with care" not in page


def test_an_audit_written_with_a_warn_verdict_beside_a_failed_gate_reads_as_failed(tmp_path: Path) -> None:
    save_report(_blocked(), tmp_path, formats=("json",))
    raw = json.loads((tmp_path / "audit.json").read_text())
    raw["verdict"] = _warned().verdict.model_dump(mode="json", exclude={"decided_by"})  # as written before
    (tmp_path / "audit.json").write_text(json.dumps(raw))
    assert load_report(tmp_path).verdict.status == "fail"


def test_the_diff_of_a_blocked_release_opens_with_the_gate() -> None:
    diff = diff_reports(_warned(), _blocked())
    assert diff.new.verdict == "fail" and diff.new.gate == "failed"
    assert diff_status(diff).level == "fail" and diff_status(diff).label == "blocked"
    assert diff.headline().startswith("Release gate failed.")
    assert "Release gate failed." in render_diff_markdown(diff)
    page = render_diff_html(diff)
    assert 'class="verdict verdict-fail"' in page
