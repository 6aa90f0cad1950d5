"""The findings the lens analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import Findings, FindingSpec, Severity

FINDINGS = Findings(
    "lens",
    FindingSpec("prediction_formed", Severity.INFO,
                "the first layer whose lens agrees with the model's top-1 at least `formed` (0.5) of the time"),
    FindingSpec("direct_contributors", Severity.INFO,
                "the heads and MLPs with the largest positive direct logit attribution"),
)
"""Every finding the lens analysis gives (docs/findings.md is written from these)."""
