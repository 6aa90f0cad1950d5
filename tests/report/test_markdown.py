"""Markdown for a CI summary or a pull-request comment: it names the failing rules and escapes user text."""

from __future__ import annotations

import re

from auditor.policy.diff import diff_reports
from auditor.policy.evaluate import evaluate_policy
from auditor.policy.rules import FindingRule, MetricRule, Policy
from auditor.report.markdown import escape, render_diff_markdown, render_verdict_markdown
from auditor.schema.report import AuditReport

POLICY = Policy(rules=(
    MetricRule(name="accurate | enough", metric="performance.accuracy", min=0.95),
    FindingRule(name="no markup in module names", findings=["inventory.suspicious_name"]),
))


def test_the_verdict_names_the_failing_rules_with_their_numbers(gate_report: AuditReport) -> None:
    text = render_verdict_markdown(evaluate_policy(gate_report, POLICY))
    assert text.startswith("## ❌ auditor check: failed\n")
    assert "| ❌ fail | accurate \\| enough | performance.accuracy 0.912 &lt; min 0.95 |" in text
    assert "| ❌ fail | no markup in module names | 1 matching finding (at most 0 allowed): " in text
    assert "| ❌ fail | every analysis completed | 1 of 3 analyses failed: attribution |" in text
    assert "- Exit code: 1" in text


def test_a_script_module_name_is_escaped(gate_report: AuditReport) -> None:
    text = render_verdict_markdown(evaluate_policy(gate_report, POLICY))
    assert "head.&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text and "<img" not in text
    assert set(re.findall(r"</?([a-z]+)", text)) <= {"details", "summary"}  # the only tags are ours
    for line in text.splitlines():
        if line.startswith("| "):
            assert len(re.findall(r"(?<!\\)\|", line)) == 4, line  # no cell split by a user's "|"


def test_escape_makes_markdown_and_mentions_inert() -> None:
    assert escape("a|b *c* _d_ `e` [f](g) ~h~ @team\nnext") == \
        "a\\|b \\*c\\* \\_d\\_ \\`e\\` \\[f\\](g) \\~h\\~ &#64;team next"
    assert escape("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"


def test_the_diff_markdown_escapes_and_reports_no_change(gate_report: AuditReport) -> None:
    text = render_diff_markdown(diff_reports(gate_report, gate_report))
    assert "**No change: every metric, class, finding and module number is the same.**" in text
    assert "No metric changed." in text and "No finding added or resolved (7 unchanged)." in text
    assert "<script" not in text and "tiny-sentiment &lt;script&gt;" in text
