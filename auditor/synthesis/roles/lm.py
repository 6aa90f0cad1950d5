"""The role rules of a causal language model: its ablation (`lm_ablation`: critical, in-context copying) and its
attention heads' signatures (`heads`: induction heads and the previous-token heads they read)."""

from __future__ import annotations

from auditor.schema.cards import Clause, Evidence
from auditor.schema.findings import Finding
from auditor.synthesis.roles.common import CRITICAL, IN_CONTEXT, INDUCTION, PREVIOUS_TOKEN, num
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


def _own_heads(view: AuditView, module: str, key: str) -> list[str]:
    """The heads of attention module `module` that the `heads` analysis lists under details[key], in its order."""
    listed = view.details("heads").get(key)
    return [h for h in listed if isinstance(h, str) and h.split("#", 1)[0] == module] if isinstance(listed, list) else []


def lm_heads(view: AuditView, module: str) -> list[Clause]:
    """A causal LM's attention module whose heads the `heads` analysis classified: `induction head` where one of
    its heads is an induction head (prefix-matching and copying past their thresholds), the clause naming the
    previous-token head it reads (the earlier head whose ablation removes most of its prefix-matching score);
    `previous-token head` where one of its heads is a previous-token head, with the induction heads that read it."""
    reads = view.details("heads").get("reads")
    reads = reads if isinstance(reads, dict) else {}
    clauses = []
    for head in _own_heads(view, module, "induction"):
        score = view.value("heads", head, "induction_score")
        copying = view.value("heads", head, "copying_score")
        if score is None or copying is None:
            continue
        evidence = [Evidence(section="heads", key="induction_score", value=round(score, 4), module=head),
                    Evidence(section="heads", key="copying_score", value=round(copying, 4), module=head)]
        text = (f"Its head {head} is an induction head: on repeated random tokens it puts {score:.2f} of its "
                f"attention on the token after the earlier copy of the current one, and its own output ranks that "
                f"token in the top 5% of the vocabulary {copying:.0%} of the time")
        read, drop = reads.get(head), view.value("heads", head, "reads_previous_token_head_drop")
        if isinstance(read, str) and drop is not None:
            text += (f"; it reads the previous-token head {read} (ablating that head lowers its prefix-matching "
                     f"score by {drop:.2f})")
            evidence.append(Evidence(section="heads", key="reads_previous_token_head_drop", value=round(drop, 4),
                                     module=head))
        clauses.append(Clause(text=text + ".", tag=INDUCTION, evidence=evidence))
    for head in _own_heads(view, module, "previous_token"):
        score = view.value("heads", head, "previous_token_score")
        if score is None:
            continue
        readers = [h for h, read in reads.items() if read == head]
        clauses.append(Clause(
            text=(f"Its head {head} is a previous-token head ({score:.2f} of its attention on the previous token)"
                  + (f", read by the induction head{'s' * (len(readers) > 1)} {', '.join(readers)}." if readers
                     else ".")),
            tag=PREVIOUS_TOKEN, evidence=[Evidence(section="heads", key="previous_token_score", value=round(score, 4),
                                                   module=head)]))
    return clauses
