"""`auditor card`: a model-card section in Markdown, escaped."""

from __future__ import annotations

from auditor.policy.evaluate import evaluate_policy
from auditor.report.card import render_card
from auditor.schema.report import AuditReport


def test_the_card_summarizes_the_audit(gate_report: AuditReport) -> None:
    card = render_card(gate_report)
    assert card.startswith("## Audit\n")
    assert "| Weights sha256 | 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 |" in card
    assert "| Accuracy | 91.2% |" in card
    assert "- **fail** inventory.nan\\_outputs (encoder.layers.2.ff2): encoder.layers.2.ff2 produced 12 NaN" in card
    assert "- Attribution failed (RuntimeError)." in card  # named as its section is
    assert "<script" not in card and "&lt;script&gt;" in card
    assert "### Release gate" not in card


def test_the_card_carries_the_gate_verdict_when_the_audit_has_one(gate_report: AuditReport) -> None:
    judged = gate_report.model_copy(update={"policy": evaluate_policy(gate_report)})
    card = render_card(judged)
    assert "### Release gate\n\nFailed against built-in default policy: 2 of 2 rules failed" in card
