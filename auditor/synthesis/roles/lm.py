"""The role rule of a causal language model's ablation (`lm_ablation`): critical, in-context copying."""

from __future__ import annotations

from auditor.schema.cards import Clause, Evidence
from auditor.schema.findings import Finding
from auditor.synthesis.roles.common import CRITICAL, IN_CONTEXT, num
from auditor.synthesis.view import AuditView


def _lm_finding(view: AuditView, module: str, finding_id: str) -> Finding | None:
    """The language-model ablation group finding `finding_id`, when it names `module` among its targets."""
    return next((f for f in view.groups.get(module, []) if f.id == finding_id), None)


def lm_roles(view: AuditView, module: str) -> list[Clause]:
    """A causal LM's ablation (`lm_ablation`): `critical` where the `lm_ablation.critical` finding names the module
    (ablating it raises the next-token loss by at least its threshold at the interval's low end), `in-context
    copying` where `lm_ablation.in_context` does (the loss rises on tokens seen earlier in the text, not on first
    occurrences); the clauses cite the module's own numbers."""
    rise = view.value("lm_ablation", module, "loss_increase")
    low = view.value("lm_ablation", module, "loss_increase_low")
    high = view.value("lm_ablation", module, "loss_increase_high")
    if rise is None or low is None or high is None:
        return []
    clauses = []
    critical_finding = _lm_finding(view, module, "lm_ablation.critical")
    if critical_finding is not None:
        at = num(critical_finding.evidence.get("threshold"))
        clauses.append(Clause(
            text=(f"Ablating it raises the next-token loss by {rise:.2f} nats [{low:.2f}, {high:.2f}] per token"
                  + (f" (critical from {at:g})." if at is not None else ".")),
            tag=CRITICAL, evidence=[Evidence(section="lm_ablation", key="loss_increase", value=round(rise, 4),
                                             low=low, high=high)]))
    repeated = view.value("lm_ablation", module, "loss_increase_repeated")
    first = view.value("lm_ablation", module, "loss_increase_first")
    if _lm_finding(view, module, "lm_ablation.in_context") is not None and repeated is not None and first is not None:
        clauses.append(Clause(
            text=(f"Ablating it raises the loss on tokens seen earlier in the text by {repeated:.2f} nats and on "
                  f"first occurrences by {first:+.2f}: it serves in-context copying."),
            tag=IN_CONTEXT, evidence=[Evidence(section="lm_ablation", key="loss_increase_repeated",
                                               value=round(repeated, 4)),
                                      Evidence(section="lm_ablation", key="loss_increase_first",
                                               value=round(first, 4))]))
    return clauses
