"""The findings the weights analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import Findings, FindingSpec, Severity

FINDINGS = Findings(
    "weights",
    FindingSpec("under_trained", Severity.INFO,
                "a layer's α is above `under_trained_alpha` (6); or no eigenvalue of its weights stands above the "
                "Marchenko–Pastur edge (\"looks untrained\": warn, one finding for several such layers)",
                also=(Severity.WARN,), severity_note="info; warn for noise"),
    FindingSpec("over_trained", Severity.INFO,
                "a layer's α is below `over_trained_alpha` (2)"),
    FindingSpec("correlation_trap", Severity.INFO,
                "with a layer's weights shuffled an eigenvalue still stands above the edge: names the outsized weight "
                "and its index"),
    FindingSpec("rank_collapse", Severity.WARN,
                "a layer's numerical rank falls short of full by more than `rank_collapse_fraction` (10%), not "
                "counting the one dimension a softmax head may miss for nothing"),
    FindingSpec("non_finite", Severity.FAIL,
                "a layer holds NaN or Inf weights"),
    FindingSpec("alpha_summary", Severity.INFO,
                "the model: mean and median α over the fitted layers, how many lie outside [2, 6]"),
)
"""Every finding the weights analysis gives (docs/findings.md is written from these)."""
