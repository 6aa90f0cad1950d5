"""The findings the probes analysis declares: id, severity, the condition as a sentence, the default rule."""

from __future__ import annotations

from auditor.schema.findings import DefaultRule, Findings, FindingSpec, Severity

_DECODABLE = DefaultRule("the audit labels stay linearly decodable", severity="warn", critical=False,
                         comments={"severity": "the audit data's own labels; the built-in probe sets only inform"})

FINDINGS = Findings(
    "probes",
    FindingSpec("peak_layer", Severity.INFO,
                "where each property is best decodable, with its interval, the shuffled-label threshold, the majority "
                "rate and the re-initialized network's accuracy there"),
    FindingSpec("no_signal", Severity.WARN,
                "no block beats the 95th percentile of the shuffled labels' best block: the property is not linearly "
                "decodable anywhere", also=(Severity.INFO,), severity_note="warn (info for the built-in sets)",
                rule=_DECODABLE),
    FindingSpec("not_learned", Severity.INFO,
                "at the peak, the re-initialized network is within `not_learned_margin` of the trained one: the "
                "property lives in the input or the architecture, not in what training taught"),
    FindingSpec("lost_in_head", Severity.WARN,
                "a property decodable in a middle block is at least `lost_margin` less decodable at the head's input "
                "(the last block for an encoder), their intervals apart", also=(Severity.INFO,),
                severity_note="warn (info for the built-in sets)", rule=_DECODABLE),
)
"""Every finding the probes analysis gives (docs/findings.md is written from these)."""
