"""The findings the attribution analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import DefaultRule, Findings, FindingSpec, Severity

DEFAULT_RULES = (
    DefaultRule("attributions converge", metric="attribution.ig_relative_delta", max=0.05, critical=False,
                optional=True,
                comments={"max": "IG's median convergence delta, as a share of |F(x) - F(baseline)|",
                          "optional": "attributions need a head (not a bare encoder)"}),
)

FINDINGS = Findings(
    "attribution",
    FindingSpec("ig_not_converged", Severity.WARN,
                "Integrated Gradients' median convergence delta is more than `convergence_tolerance` of the median "
                "|F(x) − F(baseline)|: the maps do not add up to the change they explain"),
    FindingSpec("far_token", Severity.INFO,
                "causal language models: in some explained predictions one prefix token at least `far_tokens` "
                "positions back carries at least `dominant_share` of the |attribution|: the model reads far context"),
)
"""Every finding the attribution analysis gives (docs/findings.md is written from these)."""
