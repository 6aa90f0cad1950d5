"""The findings the trust analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import DefaultRule, Findings, FindingSpec, Severity

_SANE_AND_FAITHFUL = DefaultRule("explanations pass their sanity and faithfulness checks", severity="warn",
                                 critical=False, comments={"critical": "they judge the explainer, not the model"})
_PROTECTED = DefaultRule("no reliance on protected features", severity="warn", critical=False,
                         comments={"critical": "set true to fail a release whose predictions flip when he/she or "
                                               "names are swapped"})

FINDINGS = Findings(
    "trust",
    FindingSpec("sanity_failed", Severity.WARN,
                "after every weight is re-initialized, a method's signed maps still rank-correlate above "
                "`sanity_threshold` with the trained model's: they describe the input, not the model (it judges the "
                "explainer)", rule=_SANE_AND_FAITHFUL),
    FindingSpec("unfaithful", Severity.WARN,
                "on a model where the test has power (occlusion beats random orders and random maps), deleting the "
                "positions a method ranks first does not lower the target's probability faster than random orders "
                "(one-sided Wilcoxon p ≥ `alpha`)", rule=_SANE_AND_FAITHFUL),
    FindingSpec("faithfulness_inconclusive", Severity.INFO,
                "the deletion test cannot judge explainers on this model: random deletion collapses the prediction "
                "(normalized area < `collapse_area`), removing everything barely moves it, occlusion does not beat "
                "random orders or random maps, or random maps clearly beat random orders; no `trust.unfaithful` is "
                "given"),
    FindingSpec("protected_feature", Severity.WARN,
                "swapping protected words (or replacing the protected region) flips more than `flip_threshold` of the "
                "edited predictions overall, or in a class whose flip rate's Wilson interval lies wholly above it, or "
                "moves the target's probability by more than `probability_threshold` on average; and, for text, the "
                "protected swaps move predictions significantly more than the neutral control swaps do (the control's "
                "flip rate is in the message and the metrics); a policy rule with `critical = true` makes it fail a "
                "release", rule=_PROTECTED),
)
"""Every finding the trust analysis gives (docs/findings.md is written from these)."""
