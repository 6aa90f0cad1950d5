"""The role rules: each reads one line of evidence for one module and, when its own test passed, gives a tag
with the clause that says it, every number cited with its section and key (docs/atlas.md lists the rules)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from auditor.schema.cards import Clause, Evidence
from auditor.schema.findings import Finding
from auditor.synthesis.view import AuditView

MAIN_PATH = "main path"
CRITICAL = "critical"
REDUNDANT = "redundant"
PRUNABLE = "prunable"
UNUSED = "unused by the decision"
DEAD = "dead units"
NOT_LEARNED = "not learned"
LOW_LEVEL = "low-level features"
REALNESS = "critical for realness"
DIVERSITY = "critical for diversity"
IN_CONTEXT = "in-context copying"
INDUCTION = "induction head"
PREVIOUS_TOKEN = "previous-token head"


def pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    return f"[{low * 100:.1f}, {high * 100:.1f}]"


def points(value: float) -> str:
    return f"{value * 100:.1f} points"


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _finding_evidence(finding: Finding, *keys: str, low: str | None = None, high: str | None = None) -> list[Evidence]:
    section = finding.id.split(".", 1)[0]
    out = []
    for key in keys:
        value = finding.evidence.get(key)
        if value is None or isinstance(value, bool):
            continue
        out.append(Evidence(section=section, key=f"finding:{finding.id}/{key}", value=value,
                            low=_num(finding.evidence.get(low)) if low and key == keys[0] else None,
                            high=_num(finding.evidence.get(high)) if high and key == keys[0] else None,
                            module=finding.module))
    return out


@dataclass(frozen=True)
class Ablation:
    """A module's ablation numbers: the drop (or the embedding change) and its 95% interval."""

    section: str
    drop: float
    low: float | None
    high: float | None
    changed: float | None

    def evidence(self, module: str) -> Evidence:
        return Evidence(section=self.section, key="ablation_drop", value=self.drop, low=self.low, high=self.high)

    def no_effect(self, margin: float) -> bool:
        """The whole 95% interval within ±margin (an equivalence test)."""
        return self.low is not None and self.high is not None and -margin <= self.low and self.high <= margin

    def effect(self, margin: float, *, embedding: bool) -> bool:
        """The interval above 0 (above the margin for an embedding change, which is never negative)."""
        return self.low is not None and self.low > (margin if embedding else 0.0)


def ablation_of(view: AuditView, module: str) -> Ablation | None:
    drop = view.value("ablation", module, "ablation_drop")
    if drop is None:
        return None
    return Ablation("ablation", drop, view.value("ablation", module, "ablation_drop_low"),
                    view.value("ablation", module, "ablation_drop_high"),
                    view.value("ablation", module, "ablation_changed"))


def _effect_words(view: AuditView, ablation: Ablation) -> str:
    if view.embedding:
        return f"changes the embedding by {ablation.drop:.3g} {interval(ablation.low, ablation.high)}".rstrip()
    return f"costs {points(ablation.drop)} of accuracy {interval(ablation.low, ablation.high)}".rstrip()


# --- the rules: (view, module) -> clauses ------------------------------------------------------------------

def main_path(view: AuditView, module: str) -> list[Clause]:
    clauses = []
    for finding in view.groups.get(module, []):
        if not finding.id.endswith(".main_path"):
            continue
        section = finding.id.split(".", 1)[0]
        count = int(_num(finding.evidence.get("count")) or 0)
        others = f", as for {count - 1} other module{'s' * (count != 2)}" if count > 1 else ""
        evidence = _finding_evidence(finding, "count", "collapsed_to", "drop_min", "drop_max", "realness_min",
                                     "realness_max", "intact_realness")
        if section == "judge":
            text = (f"Replacing it by its mean makes the generator draw one image for every noise vector{others}: "
                    "it is on the generator's main path.")
        else:
            ablation = ablation_of(view, module)
            cost = ""
            if ablation is not None:
                cost = f"; accuracy falls by {points(ablation.drop)} {interval(ablation.low, ablation.high)}".rstrip()
                evidence.insert(0, ablation.evidence(module))
            collapsed = finding.evidence.get("collapsed_to")
            classes = [c.strip() for c in collapsed.split(",")] if isinstance(collapsed, str) else []
            onto = f" ({' or '.join(classes)}, depending on the module)" if len(classes) > 1 else \
                f" ({classes[0]})" if classes else ""
            text = (f"Replacing it by its mean makes the model predict one class{onto} for nearly every sample{others}"
                    f"{cost}: it is on the main path every sample takes.")
        clauses.append(Clause(text=text, tag=MAIN_PATH, evidence=evidence))
        break
    return clauses


def class_specific(view: AuditView, module: str) -> list[Clause]:
    clauses = []
    for finding in view.findings(module, "ablation.class_specific"):
        name = str(finding.evidence.get("class"))
        top, second = _num(finding.evidence.get("class_drop")), _num(finding.evidence.get("next_class_drop"))
        if top is None:
            continue
        where = "it" if finding.module == module else f"its part {finding.module}"
        text = (f"Ablating {where} takes {points(top)} off the recall of class '{name}' and at most "
                f"{points(max(second or 0.0, 0.0))} off any other class: what '{name}' needs passes through it.")
        evidence = [Evidence(section="ablation", key=f"ablation_drop/{name}", value=top, module=finding.module),
                    *_finding_evidence(finding, "next_class_drop", "drop", low="low", high="high")]
        clauses.append(Clause(text=text, tag=f"class-specific: {name}", evidence=evidence))
    return clauses


def critical(view: AuditView, module: str) -> list[Clause]:
    clauses = []
    for finding in view.findings(module, "ablation.critical_module"):
        if finding.module != module:
            continue
        ablation = ablation_of(view, module)
        if ablation is None:
            continue
        by = finding.evidence.get("replaced_by") or "its mean"
        changed = f" ({pct(ablation.changed)} of the predictions change)" if ablation.changed is not None else ""
        text = f"Replacing it by {by} {_effect_words(view, ablation)}{changed}."
        clauses.append(Clause(text=text, tag=CRITICAL, evidence=[ablation.evidence(module)]))
    return clauses


def judge_roles(view: AuditView, module: str) -> list[Clause]:
    clauses = []
    cfg = view.config
    for finding in view.findings(module, "judge.critical_module"):
        if finding.module != module:
            continue
        e = finding.evidence
        realness, low, high = _num(e.get("realness_drop")), _num(e.get("realness_drop_low")), \
            _num(e.get("realness_drop_high"))
        diversity = _num(e.get("diversity_change"))
        if realness is not None and low is not None and low > 0 and realness >= cfg.realness_drop:
            clauses.append(Clause(
                text=(f"Replacing it by its mean lowers the discriminator's mean realness of the samples by "
                      f"{realness:.3f} [{low:.3f}, {high if high is not None else realness:.3f}]."),
                tag=REALNESS, evidence=_finding_evidence(finding, "realness_drop", low="realness_drop_low",
                                                         high="realness_drop_high")))
        if diversity is not None and diversity <= -cfg.diversity_drop:
            clauses.append(Clause(
                text=f"Replacing it by its mean cuts the samples' diversity by {-diversity:.0%}.",
                tag=DIVERSITY, evidence=_finding_evidence(finding, "diversity_change")))
    for finding in view.findings(module, "judge.class_specific"):
        e = finding.evidence
        name, intact, ablated = str(e.get("class")), _num(e.get("class_share_intact")), _num(e.get("class_share_ablated"))
        if intact is None or ablated is None:
            continue
        second = _num(e.get("next_relative_drop")) or 0.0
        clauses.append(Clause(
            text=(f"Ablating it makes class '{name}' vanish from the samples: the classifier gives it {pct(ablated)} "
                  f"of them instead of {pct(intact)}, while no other class loses more than {max(second, 0.0):.0%} "
                  f"of its share: it draws class '{name}'."),
            tag=f"draws class {name}",
            evidence=_finding_evidence(finding, "class_share_ablated", "class_share_intact", "next_relative_drop")))
    return clauses


def carries(view: AuditView, module: str) -> list[Clause]:
    """`carries: <property>`: the probe's 95% interval lies above the shuffled-label bar and above the
    re-initialized network (plus `probe_margin`); says where the property first becomes decodable and
    where it peaks. A built-in low-level probe (gratings) first decodable or peaking here adds
    `low-level features`."""
    clauses: list[Clause] = []
    low_level: list[str] = []
    for prop in view.properties:
        passed = passes_probe(view, module, prop.name, prop.threshold)
        if passed is None:
            continue
        acc, low, high, random_init, bar = passed
        if prop.name not in view.first_decodable:  # once per property, not once per module
            view.first_decodable[prop.name] = next(
                (m for m in prop.order if passes_probe(view, m, prop.name, prop.threshold)), None)
        first = view.first_decodable[prop.name] == module
        peak = any(f.evidence.get("property") == prop.name and f.module == module
                   for f in view.findings(module, "probes.peak_layer"))
        where = ", where it first becomes decodable and the peak over layers" if first and peak else \
            ", where it first becomes decodable" if first else ", the peak over layers" if peak else ""
        baselines = [f"re-initialized network {pct(random_init)}" if random_init is not None else "",
                     f"shuffled labels {pct(bar)}"]
        source = "its input" if view.details("probes").get("head_input") == module else "it"
        text = (f"A linear probe reads '{prop.name}' from {source} at {pct(acc)} {interval(low, high)} "
                f"({', '.join(b for b in baselines if b)}){where}.")
        keys = {k: k if view.value("probes", module, f"{k}/{prop.name}") is None else f"{k}/{prop.name}"
                for k in ("probe_accuracy", "probe_permutation_accuracy", "probe_random_init_accuracy")}
        evidence = [Evidence(section="probes", key=keys["probe_accuracy"], value=acc, low=low, high=high),
                    Evidence(section="probes", key=keys["probe_permutation_accuracy"], value=bar)]
        if random_init is not None:
            evidence.append(Evidence(section="probes", key=keys["probe_random_init_accuracy"], value=random_init))
        clauses.append(Clause(text=text, tag=f"carries: {prop.name}", evidence=evidence))
        if prop.builtin and prop.set == "gratings" and (first or peak):
            low_level.append(prop.name)
    if low_level:
        clauses.append(Clause(
            text=(f"It computes low-level features: the gratings' {' and '.join(low_level)} "
                  f"{'are' if len(low_level) > 1 else 'is'} decodable here first or best."),
            tag=LOW_LEVEL, evidence=[c.evidence[0] for c in clauses
                                     if c.tag and c.tag.removeprefix("carries: ") in low_level]))
    return clauses


def probe_reading(view: AuditView, module: str, prop: str,
                  threshold: float | None) -> tuple[float, float, float, float | None, float] | None:
    """(accuracy, low, high, re-initialized accuracy, shuffled-label bar) of the probe on `module`, where all are
    known (the bar is `threshold` when the property sets one)."""
    acc = probe_value(view, module, "probe_accuracy", prop)
    low = probe_value(view, module, "probe_accuracy_low", prop)
    high = probe_value(view, module, "probe_accuracy_high", prop)
    bar = threshold if threshold is not None else probe_value(view, module, "probe_permutation_accuracy", prop)
    if acc is None or low is None or high is None or bar is None:
        return None
    return acc, low, high, probe_value(view, module, "probe_random_init_accuracy", prop), bar


def beats_random_init(view: AuditView, low: float, random_init: float | None) -> bool:
    """The probe's lower bound clears the re-initialized network's accuracy plus `probe_margin` (or it has none)."""
    return random_init is None or low > random_init + view.config.probe_margin


def passes_probe(view: AuditView, module: str, prop: str,
                 threshold: float | None) -> tuple[float, float, float, float | None, float] | None:
    """(accuracy, low, high, re-initialized accuracy, shuffled-label bar) when the probe passes its test."""
    reading = probe_reading(view, module, prop, threshold)
    if reading is None:
        return None
    _, low, _, random_init, bar = reading
    return reading if low > bar and beats_random_init(view, low, random_init) else None


def probe_value(view: AuditView, module: str, key: str, prop: str) -> float | None:
    value = view.value("probes", module, f"{key}/{prop}")
    return value if value is not None or len(view.properties) != 1 else view.value("probes", module, key)


def redundant(view: AuditView, module: str) -> list[Clause]:
    """`redundant`: the ablation's (or the judge's) own equivalence finding on the module, or on a module
    that holds it with the module's own interval within ±equivalence."""
    own = view.findings(module, "ablation.redundant") + view.findings(module, "judge.redundant")
    own = [f for f in own if f.module == module]
    ablation = ablation_of(view, module)
    if own:
        finding = own[0]
        section = finding.id.split(".", 1)[0]
        if section == "judge":
            text = "Replacing it by its mean moves no judge: the generator does not need it as trained."
            return [Clause(text=text, tag=REDUNDANT, evidence=_finding_evidence(finding, "realness_drop"))]
        margin = _num(finding.evidence.get("margin")) or view.config.equivalence
        low, high = _num(finding.evidence.get("low")) or 0.0, _num(finding.evidence.get("high")) or 0.0
        what = "the embedding" if view.embedding else "accuracy"
        text = (f"Replacing it by its mean changes {what} by {-high * 100 + 0.0:+.1f} to {-low * 100 + 0.0:+.1f} points (95% "
                f"interval, within ±{points(margin)}): the model does not need it as trained.") if not view.embedding else \
            (f"Replacing it by its mean changes the embedding by {low:.3g} to {high:.3g} (95% interval, within "
             f"±{margin:g}): the model does not need it as trained.")
        evidence = [ablation.evidence(module)] if ablation is not None else \
            _finding_evidence(finding, "drop", low="low", high="high")
        return [Clause(text=text, tag=REDUNDANT, evidence=evidence)]
    holder = next((f for name in _ancestors(module) for f in view.findings(name, "ablation.redundant")
                   if f.module == name), None)
    if holder is not None and ablation is not None and ablation.no_effect(view.config.equivalence):
        text = (f"It lies inside {holder.module}, which the model does not need, and replacing it alone "
                f"{_effect_words(view, ablation)}, within ±{points(view.config.equivalence)}.")
        return [Clause(text=text, tag=REDUNDANT, evidence=[ablation.evidence(module)])]
    return []


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def prunable(view: AuditView, module: str) -> list[Clause]:
    clauses = []
    for finding in view.findings(module, "ablation.prunable_layer"):
        fraction, tolerance = _num(finding.evidence.get("fraction_removed")), _num(finding.evidence.get("tolerance"))
        if fraction is None:
            continue
        within = f" within {points(tolerance)}" if tolerance is not None else ""
        clauses.append(Clause(
            text=(f"It keeps the model's accuracy{within} with {fraction:.0%} of its kernels removed, smallest L1 "
                  "norm first: it uses about half of its capacity or less."),
            tag=PRUNABLE, evidence=_finding_evidence(finding, "fraction_removed", "tolerance")))
    return clauses


def unused(view: AuditView, module: str) -> list[Clause]:
    """`unused by the decision`: its gradient is exactly zero on every sample and removing it changes
    (almost) no prediction (at most `unused_change`)."""
    grad = view.value("gradients", module, "grad_norm")
    if grad is None or grad != 0.0:
        return []
    evidence = [Evidence(section="gradients", key="grad_norm", value=grad)]
    ablation = ablation_of(view, module)
    if ablation is None:
        return [Clause(text="Its gradient is exactly zero on every audit sample; the ablation did not measure it, "
                            "so whether removing it changes a prediction is not known.", evidence=evidence)]
    if view.embedding:
        ok = ablation.no_effect(view.config.equivalence)
        change = f"changes the embedding by at most {ablation.high or 0.0:.3g}"
    else:
        ok = ablation.changed is not None and ablation.changed <= view.config.unused_change
        change = f"changes {pct(ablation.changed or 0.0)} of the predictions"
    if not ok:
        return []
    evidence.append(Evidence(section="ablation", key="ablation_changed" if not view.embedding else "ablation_drop",
                             value=ablation.changed if not view.embedding else ablation.drop))
    return [Clause(text=f"Its gradient is exactly zero on every audit sample and replacing it {change}: "
                        "the decision does not use it.", tag=UNUSED, evidence=evidence)]


def dead_units(view: AuditView, module: str) -> list[Clause]:
    clauses = []
    for finding in view.findings(module, "inventory.dead_units"):
        dead, units = finding.evidence.get("dead_units"), finding.evidence.get("units")
        fraction = _num(finding.evidence.get("dead_fraction"))
        clauses.append(Clause(
            text=(f"{dead} of its {units} units ({pct(fraction or 0.0)}) never activate: they are zero on every "
                  "audit sample."),
            tag=DEAD, evidence=_finding_evidence(finding, "dead_units", "units", "dead_fraction")))
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
            top, edge = _num(e.get("lambda_max")), _num(e.get("edge"))
            numbers = f" (largest {top:.3g}, edge {edge:.3g})" if top is not None and edge is not None else ""
            clauses.append(Clause(
                text=("Its weights are no better than a random matrix of their size: no eigenvalue of their spectrum "
                      f"stands above the Marchenko–Pastur edge{numbers}, as if it had never been trained."),
                tag=NOT_LEARNED, evidence=_finding_evidence(finding, "lambda_max", "edge")))
        elif _num(e.get("alpha")) is not None and e.get("random_like") is not True:
            clauses.append(Clause(
                text=(f"Its weight spectrum falls off with α = {_num(e.get('alpha')):.2f}, above "
                      f"{_num(e.get('threshold')) or 6:g}: close to random, perhaps under-trained."),
                evidence=_finding_evidence(finding, "alpha", "threshold")))
    for finding in view.findings(module, "weights.over_trained"):
        alpha = _num(finding.evidence.get("alpha"))
        if finding.module == module and alpha is not None:
            clauses.append(Clause(
                text=(f"Its weight spectrum is very heavy-tailed (α = {alpha:.2f}, below "
                      f"{_num(finding.evidence.get('threshold')) or 2:g}): in Martin & Mahoney's studies a sign of "
                      "over-training."),
                evidence=_finding_evidence(finding, "alpha", "threshold")))
    return clauses


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
        at = _num(critical_finding.evidence.get("threshold"))
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


Rule = Callable[[AuditView, str], list[Clause]]
RULES: tuple[Rule, ...] = (main_path, class_specific, judge_roles, carries, critical, lm_roles, lm_heads, redundant, prunable,
                           unused, dead_units, not_learned)
"""In the order a card states them."""


__all__ = ["RULES", "Ablation", "ablation_of", "interval", "passes_probe", "pct", "points"]
