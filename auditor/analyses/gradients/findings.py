"""The findings the gradients analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import DefaultRule, Findings, FindingSpec, Severity

DEFAULT_RULES = (
    DefaultRule("the same modules carry the decision", module_metric="gradients.abs_grad_x_act",
                min_rank_correlation=0.5, critical=False, optional=True,
                comments={"min_rank_correlation": "Spearman over the modules both releases share",
                          "optional": "gradients need a head (not a bare encoder)"}),
)
_NEITHER_VANISH_NOR_EXPLODE = DefaultRule("gradients neither vanish nor explode", severity="warn", critical=False)

FINDINGS = Findings(
    "gradients",
    FindingSpec("no_influence", Severity.INFO,
                "a module runs, yet the decision does not depend on its output: its gradient is exactly zero on every "
                "sample (MiniLM's pooler, whose output the mean-pooling head never reads). Reported at the outermost "
                "such module"),
    FindingSpec("vanishing", Severity.WARN,
                "in a repeated stack of blocks of one type and shape, the first block's gradient norm is below "
                "`vanishing_ratio` (above `exploding_ratio`) times the last one's. Only such blocks are compared: "
                "norms are not scale-invariant across different layers", rule=_NEITHER_VANISH_NOR_EXPLODE),
    FindingSpec("exploding", Severity.WARN,
                "in a repeated stack of blocks of one type and shape, the first block's gradient norm is below "
                "`vanishing_ratio` (above `exploding_ratio`) times the last one's. Only such blocks are compared: "
                "norms are not scale-invariant across different layers", rule=_NEITHER_VANISH_NOR_EXPLODE),
)
"""Every finding the gradients analysis gives (docs/findings.md is written from these)."""
