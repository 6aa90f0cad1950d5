"""The findings the heads analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import Findings, FindingSpec, Severity

FINDINGS = Findings(
    "heads",
    FindingSpec("induction_heads", Severity.INFO,
                "heads past the thresholds; the induction finding names the previous-token head each reads"),
    FindingSpec("previous_token_heads", Severity.INFO,
                "heads past the thresholds; the induction finding names the previous-token head each reads"),
    FindingSpec("duplicate_token_heads", Severity.INFO,
                "heads past the thresholds; the induction finding names the previous-token head each reads"),
)
"""Every finding the heads analysis gives (docs/findings.md is written from these)."""
