"""The role rules that read the units and the weights: dead units (inventory) and not learned (weights)."""

from __future__ import annotations

from auditor.schema.cards import Clause, Evidence
from auditor.synthesis.roles.common import DEAD, NOT_LEARNED, finding_evidence, num, pct
from auditor.synthesis.view import AuditView


def dead_units(view: AuditView, module: str) -> list[Clause]:
    clauses = []
    for finding in view.findings(module, "inventory.dead_units"):
        dead, units = finding.evidence.get("dead_units"), finding.evidence.get("units")
        fraction = num(finding.evidence.get("dead_fraction"))
        clauses.append(Clause(
            text=(f"{dead} of its {units} units ({pct(fraction or 0.0)}) never activate: they are zero on every "
                  "audit sample."),
            tag=DEAD, evidence=finding_evidence(finding, "dead_units", "units", "dead_fraction")))
    row = view.rows.get(module)
    if not clauses and row is not None and row.dead_units and row.units:
        # Under the inventory's warning threshold: no tag, but the card says what the module table's row shows.
        clauses.append(Clause(
            text=(f"{row.dead_units} of its {row.units} units ({pct(row.dead_units / row.units)}) never activate, "
                  "under the share the inventory warns at."),
            evidence=[Evidence(section="inventory", key="dead_units", value=row.dead_units, module=module)]))
    return clauses


def not_learned(view: AuditView, module: str) -> list[Clause]:
    clauses = []
    for finding in view.findings(module, "weights.under_trained"):
        if finding.module != module:
            continue
        e = finding.evidence
        if e.get("random_like") is True:
            top, edge = num(e.get("lambda_max")), num(e.get("edge"))
            numbers = f" (largest {top:.3g}, edge {edge:.3g})" if top is not None and edge is not None else ""
            clauses.append(Clause(
                text=("Its weights are no better than a random matrix of their size: no eigenvalue of their spectrum "
                      f"stands above the Marchenko–Pastur edge{numbers}, as if it had never been trained."),
                tag=NOT_LEARNED, evidence=finding_evidence(finding, "lambda_max", "edge")))
        elif num(e.get("alpha")) is not None and e.get("random_like") is not True:
            clauses.append(Clause(
                text=(f"Its weight spectrum falls off with α = {num(e.get('alpha')):.2f}, above "
                      f"{num(e.get('threshold')) or 6:g}: close to random, perhaps under-trained."),
                evidence=finding_evidence(finding, "alpha", "threshold")))
    for finding in view.findings(module, "weights.over_trained"):
        alpha = num(finding.evidence.get("alpha"))
        if finding.module == module and alpha is not None:
            clauses.append(Clause(
                text=(f"Its weight spectrum is very heavy-tailed (α = {alpha:.2f}, below "
                      f"{num(finding.evidence.get('threshold')) or 2:g}): in Martin & Mahoney's studies a sign of "
                      "over-training."),
                evidence=finding_evidence(finding, "alpha", "threshold")))
    return clauses
