"""The release diff as HTML and PDF, and the gate's verdict inside the audit report: escaped, self-contained."""

from __future__ import annotations

import re

from auditor.policy.diff import diff_reports
from auditor.policy.evaluate import evaluate_policy
from auditor.policy.rules import FindingRule, Policy
from auditor.report.diff_html import render_diff_html, render_diff_pdf
from auditor.report.html import render_html
from auditor.report.pdf import DataOnlyFetcher
from auditor.schema.report import AuditReport
from tests.report.sample_report import PWN, XSS


def _changed(report: AuditReport) -> AuditReport:
    metrics = {**report.metrics, "performance.accuracy": 0.85}
    return report.model_copy(update={"metrics": metrics, "findings": report.findings[1:]})


def test_the_diff_page_is_escaped_and_fetches_nothing(gate_report: AuditReport) -> None:
    page = render_diff_html(diff_reports(gate_report, _changed(gate_report)))
    assert XSS not in page and PWN not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script") == 1  # ours: the sortable tables
    for url in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page):
        assert url.startswith(("data:", "#")), url
    assert "<h3>Resolved (1)</h3>" in page
    # metrics are named for a reader, with the key a policy names in the tooltip
    assert re.search(r'<td class="metric-name" data-sort="performance.accuracy"><span class="metric-label" '
                     r'title="performance.accuracy">performance: accuracy \(fraction\)</span></td>\s*'
                     r'<td class="num" data-sort="0.912">', page)
    assert "<code>performance.accuracy</code>" not in page
    assert page.count('class="figure side"') == 2  # the one figure both audits have, side by side


def test_the_diff_of_a_report_with_itself_says_same(gate_report: AuditReport) -> None:
    page = render_diff_html(diff_reports(gate_report, gate_report))
    assert '<div class="verdict-status">same</div>' in page and "No metric changed." in page


def test_the_diff_pdf_fetches_only_its_figures(gate_report: AuditReport) -> None:
    fetcher = DataOnlyFetcher()
    pdf = render_diff_pdf(diff_reports(gate_report, _changed(gate_report)), fetcher=fetcher)
    assert pdf.startswith(b"%PDF-")
    assert fetcher.requested and all(url.startswith("data:") for url in fetcher.requested)
    assert "<script" not in render_diff_html(diff_reports(gate_report, gate_report), for_pdf=True)


def test_the_report_shows_the_gate_verdict_when_judged(gate_report: AuditReport) -> None:
    verdict = evaluate_policy(gate_report, Policy(rules=(FindingRule(name=f"no {XSS}", findings=["x.*"]),)))
    page = render_html(gate_report.model_copy(update={"policy": verdict}))
    gate = re.search(r'<section id="release-gate".*?</section>', page, re.S)
    assert gate is not None
    assert "2 of 3 rules failed" in gate.group(0) and "no &lt;script&gt;alert(1)&lt;/script&gt;" in gate.group(0)
    assert '<a href="#release-gate">Release gate</a>' in page
    assert 'id="release-gate"' not in render_html(gate_report)
