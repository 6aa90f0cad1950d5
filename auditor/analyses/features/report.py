"""The features section's table, details and findings, from the chosen units."""


from __future__ import annotations

from typing import Any


from auditor.schema.findings import Finding
from auditor.schema.report import Table


from auditor.analyses.features.params import UnitView
from auditor.analyses.features.findings import FINDINGS


def unit_detail(v: UnitView) -> dict[str, Any]:
    return {"unit": v.unit, "relevance": v.relevance, "max_real_activation": v.max_real,
            "max_optimized_activation": v.optimized, "real_objective": v.real_objective,
            "optimized_objective": v.optimized_objective,
            "random_activation": v.random,
            "top_by_activation": [{"sample": s, "activation": a, "position": pos} for s, a, pos in v.by_activation],
            "top_by_relevance": [{"sample": s, "relevance": r} for s, r in v.by_relevance]}


def units_table(views: list[UnitView], *, text: bool) -> Table:
    rows: list[list[Any]] = []
    neurons = any(v.fires_on is not None for v in views)
    for v in views:
        reached = v.optimized_objective
        rows.append([v.module, v.unit, round(v.relevance, 6), round(v.real_objective, 6),
                     round(reached, 6) if reached is not None else None,
                     round(reached / v.real_objective, 3) if reached is not None and v.real_objective > 0 else None,
                     (v.search or {}).get("text", "") if text else
                     ", ".join(f"#{s}" for s, _, _ in v.by_activation)])
        if neurons:
            rows[-1] += [", ".join(f"{t} ×{c}" for t, c in (v.fires_on or [])[:3]),
                         ", ".join(t for t, _ in (v.promotes or []))]
    caption = ("Relevance: mean |gradient × activation| of the unit toward the decision (or its variance "
               "without one). Best real: the objective's largest value on an audit sample (a conv channel: "
               "its mean over space under the channel objective; otherwise the unit's largest value over "
               "positions, which bounds a neuron objective's centre value from above). Optimized: the same "
               "on the optimized input or the text found; a ratio above 1 means it beats every real sample.")
    if neurons:
        caption += (" A language model's neuron: relevance toward the mean log-probability of the audited next "
                    "tokens; the text found is scored at its last token; fires on: the tokens it peaks on over its "
                    "top examples (where above 0); promotes: the tokens whose logits its output row raises directly "
                    "(through the final norm, its 1/σ taken as 1, and the unembedding).")
    return Table(id="features.units", title="Chosen units",
                 columns=["module", "unit", "relevance", "best real",
                          "token search" if text else "optimized", "ratio",
                          "text found" if text else "top samples",
                          *(["fires on", "promotes"] if neurons else [])],
                 rows=rows, caption=caption)


def weak_optimizations(views: list[UnitView]) -> list[Finding]:
    weak = [v for v in views if v.optimized_objective is not None and v.real_objective > 0
            and v.optimized_objective < v.real_objective]
    if not weak:
        return []
    by_module: dict[str, list[UnitView]] = {}
    for v in weak:
        by_module.setdefault(v.module, []).append(v)
    findings = []
    for module, items in by_module.items():
        worst = min(items, key=lambda v: (v.optimized_objective or 0.0) / v.real_objective)
        findings.append(FINDINGS.finding(
            "optimization_below_real", module=module,
            message=(f"For {len(items)} unit{'s' * (len(items) != 1)} of {module} the optimized input reached less "
                     f"than the best real sample (unit {worst.unit}: {worst.optimized_objective:.3g} against "
                     f"{worst.real_objective:.3g}); "
                     + ("its token search found a weaker input than its top examples." if worst.search is not None
                        else "its picture shows a weaker stimulus than its top examples.")),
            evidence={"units": len(items), "worst_unit": worst.unit,
                      "optimized": round(worst.optimized_objective or 0.0, 6),
                      "max_real": round(worst.real_objective, 6)}))
    return findings
