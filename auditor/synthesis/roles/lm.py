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
                  + (f" (critical from {at:g} nat{'s' * (at != 1)})." if at is not None else ".")),
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
    if not isinstance(listed, list):
        return []
    return [h for h in listed if isinstance(h, str) and h.split("#", 1)[0] == module]


def lm_heads(view: AuditView, module: str) -> list[Clause]:
    """A causal LM's attention module whose heads the `heads` analysis classified: `induction head` where some of
    its heads are induction heads (prefix-matching and copying past their thresholds), in one clause for all of
    them, naming the previous-token head each reads (the earlier head whose ablation removes most of its
    prefix-matching score);
    `previous-token head` where one of its heads is a previous-token head, with the induction heads that read it."""
    reads = view.details("heads").get("reads")
    reads = reads if isinstance(reads, dict) else {}
    clauses = []
    induction = _induction_clause(view, _own_heads(view, module, "induction"), reads)
    if induction is not None:
        clauses.append(induction)
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


def _span(values: list[float], fmt: str) -> str:
    """One value, or the range of several, as `fmt` writes each ("0.74", "0.71–0.74")."""
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}–{high}"


def _induction_clause(view: AuditView, heads: list[str], reads: dict[str, object]) -> Clause | None:
    """One clause for all of a module's induction heads (the same fact for three heads is one fact): their
    prefix-matching and copying scores (a range where they differ) and the previous-token head(s) they read."""
    found = []
    for head in heads:
        score, copying = view.value("heads", head, "induction_score"), view.value("heads", head, "copying_score")
        if score is not None and copying is not None:
            read, drop = reads.get(head), view.value("heads", head, "reads_previous_token_head_drop")
            found.append((head, score, copying, read if isinstance(read, str) and drop is not None else None, drop))
    if not found:
        return None
    evidence = []
    for head, score, copying, read, drop in found:
        evidence += [Evidence(section="heads", key="induction_score", value=round(score, 4), module=head),
                     Evidence(section="heads", key="copying_score", value=round(copying, 4), module=head)]
        if read is not None and drop is not None:
            evidence.append(Evidence(section="heads", key="reads_previous_token_head_drop", value=round(drop, 4),
                                     module=head))
    names = [h for h, *_ in found]
    one = len(found) == 1
    subject = f"Its head {names[0]} is an induction head" if one else \
        f"Its heads {', '.join(names[:-1])} and {names[-1]} are induction heads"
    text = (f"{subject}: on repeated random tokens {'it' if one else 'each'} puts "
            f"{_span([f[1] for f in found], '.2f')} of its attention on the token after the earlier copy of the "
            f"current one, and its own output ranks that token in the top 5% of the vocabulary "
            f"{_span([f[2] * 100 for f in found], '.0f')}% of the time")
    readers = [(h, read, drop) for h, _, _, read, drop in found if read is not None and drop is not None]
    previous = sorted({read for _, read, _ in readers})
    if len(previous) == 1:
        who = "it reads" if one else ("each reads" if len(readers) == len(found) else
                                      f"{', '.join(h for h, _, _ in readers)} read")
        text += (f"; {who} the previous-token head {previous[0]} (ablating that head lowers "
                 f"{'its' if one else 'their'} prefix-matching score{'' if one else 's'} by "
                 f"{_span([d for _, _, d in readers], '.2f')})")
    elif previous:
        text += "; " + "; ".join(f"{h} reads the previous-token head {read} (ablating it lowers {h}'s "
                                 f"prefix-matching score by {drop:.2f})" for h, read, drop in readers)
    return Clause(text=text + ".", tag=INDUCTION, evidence=evidence)
