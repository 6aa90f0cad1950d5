"""The findings the features analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import Findings, FindingSpec, Severity

FINDINGS = Findings(
    "features",
    FindingSpec("optimization_below_real", Severity.INFO,
                "the optimized input (or the text found) of some units of a module reaches less than the best real "
                "sample: its picture shows a weaker stimulus than its top examples"),
)
"""Every finding the features analysis gives (docs/findings.md is written from these)."""
