"""The findings the lm_ablation analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import Findings, FindingSpec, Severity

FINDINGS = Findings(
    "lm_ablation",
    FindingSpec("critical", Severity.INFO,
                "ablating targets raises the loss by at least `critical` nats (1.0) at the interval's low end: one "
                "finding for all"),
    FindingSpec("in_context", Severity.INFO,
                "ablating targets raises the loss on repeated tokens by at least `in_context` (0.5) and on first "
                "occurrences by less than a fifth of that"),
    FindingSpec("unused", Severity.INFO,
                "targets whose interval lies within ±`unused` (0.01 nats)"),
    FindingSpec("inconclusive", Severity.INFO,
                "fewer than `min_texts` (10) texts: nothing is concluded"),
)
"""Every finding the lm_ablation analysis gives (docs/findings.md is written from these)."""
