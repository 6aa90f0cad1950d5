"""The release diff and the gate's verdict in headless Chromium: no errors, no requests, no injection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditor.policy.diff import diff_reports
from auditor.policy.evaluate import evaluate_policy
from auditor.policy.rules import FindingRule, Policy
from auditor.report.diff_html import render_diff_html
from auditor.report.html import render_html
from auditor.schema.report import AuditReport
from tests.conftest import open_page

pytestmark = pytest.mark.browser


def _open(browser: Any, html: str, path: Path) -> tuple[Any, Any]:
    path.write_text(html, encoding="utf-8")
    return open_page(browser, path)


def test_the_diff_page_loads_clean_and_its_tables_sort(browser: Any, gate_report: AuditReport, tmp_path: Path) -> None:
    changed = gate_report.model_copy(update={"metrics": {**gate_report.metrics, "performance.accuracy": 0.8,
                                                         "performance.latency_ms": 20.0}})
    page, log = _open(browser, render_diff_html(diff_reports(gate_report, changed)), tmp_path / "diff.html")
    try:
        assert log.errors == [] and all(u.startswith(("file:", "data:")) for u in log.requests), log.requests
        assert page.evaluate("window.__pwned") is None
        table = "#metrics table tbody tr"
        page.locator("#metrics th", has_text="change").first.click()
        changes = page.eval_on_selector_all(table, "rows => rows.map(r => Number(r.cells[3].dataset.sort))")
        assert changes == sorted(changes, reverse=True) and len(changes) == 2
    finally:
        page.close()


def test_the_gate_in_the_report_loads_clean(browser: Any, gate_report: AuditReport, tmp_path: Path) -> None:
    verdict = evaluate_policy(gate_report, Policy(rules=(FindingRule(name="<img src=x onerror=window.__pwned=3>",
                                                                     findings=["*"]),)))
    page, log = _open(browser, render_html(gate_report.model_copy(update={"policy": verdict})), tmp_path / "r.html")
    try:
        assert log.errors == [] and page.evaluate("window.__pwned") is None
        names = page.eval_on_selector_all("#release-gate .rule-name", "cells => cells.map(c => c.innerText)")
        assert "<img src=x onerror=window.__pwned=3>" in names  # shown as text, never run
    finally:
        page.close()
