"""The role rules that read what removing a module does: ablation (main path, class-specific, critical, redundant,
prunable), the generator judge, and gradients with ablation (unused by the decision)."""

from __future__ import annotations

from dataclasses import dataclass

from auditor.schema.cards import Clause, Evidence
from auditor.synthesis.roles.common import (CRITICAL, DIVERSITY, MAIN_PATH, PRUNABLE, REALNESS, REDUNDANT, UNUSED,
                                            finding_evidence, interval, num, pct, points)
from auditor.synthesis.view import AuditView


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
        count = int(num(finding.evidence.get("count")) or 0)
        others = f", as for {count - 1} other module{'s' * (count != 2)}" if count > 1 else ""
        evidence = finding_evidence(finding, "count", "collapsed_to", "drop_min", "drop_max", "realness_min",
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
        top, second = num(finding.evidence.get("class_drop")), num(finding.evidence.get("next_class_drop"))
        if top is None:
            continue
        where = "it" if finding.module == module else f"its part {finding.module}"
        text = (f"Ablating {where} takes {points(top)} off the recall of class '{name}' and at most "
                f"{points(max(second or 0.0, 0.0))} off any other class: what '{name}' needs passes through it.")
        evidence = [Evidence(section="ablation", key=f"ablation_drop/{name}", value=top, module=finding.module),
                    *finding_evidence(finding, "next_class_drop", "drop", low="low", high="high")]
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
        realness, low, high = num(e.get("realness_drop")), num(e.get("realness_drop_low")), \
            num(e.get("realness_drop_high"))
        diversity = num(e.get("diversity_change"))
        if realness is not None and low is not None and low > 0 and realness >= cfg.realness_drop:
            clauses.append(Clause(
                text=(f"Replacing it by its mean lowers the discriminator's mean realness of the samples by "
                      f"{realness:.3f} [{low:.3f}, {high if high is not None else realness:.3f}]."),
                tag=REALNESS, evidence=finding_evidence(finding, "realness_drop", low="realness_drop_low",
                                                         high="realness_drop_high")))
        if diversity is not None and diversity <= -cfg.diversity_drop:
            clauses.append(Clause(
                text=f"Replacing it by its mean cuts the samples' diversity by {-diversity:.0%}.",
                tag=DIVERSITY, evidence=finding_evidence(finding, "diversity_change")))
    for finding in view.findings(module, "judge.class_specific"):
        e = finding.evidence
        name, intact, ablated = str(e.get("class")), num(e.get("class_share_intact")), num(e.get("class_share_ablated"))
        if intact is None or ablated is None:
            continue
        second = num(e.get("next_relative_drop")) or 0.0
        clauses.append(Clause(
            text=(f"Ablating it makes class '{name}' vanish from the samples: the classifier gives it {pct(ablated)} "
                  f"of them instead of {pct(intact)}, while no other class loses more than {max(second, 0.0):.0%} "
                  f"of its share: it draws class '{name}'."),
            tag=f"draws class {name}",
            evidence=finding_evidence(finding, "class_share_ablated", "class_share_intact", "next_relative_drop")))
    return clauses


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
            return [Clause(text=text, tag=REDUNDANT, evidence=finding_evidence(finding, "realness_drop"))]
        margin = num(finding.evidence.get("margin")) or view.config.equivalence
        low, high = num(finding.evidence.get("low")) or 0.0, num(finding.evidence.get("high")) or 0.0
        what = "the embedding" if view.embedding else "accuracy"
        text = (f"Replacing it by its mean changes {what} by {-high * 100 + 0.0:+.1f} to {-low * 100 + 0.0:+.1f} points (95% "
                f"interval, within ±{points(margin)}): the model does not need it as trained.") if not view.embedding else \
            (f"Replacing it by its mean changes the embedding by {low:.3g} to {high:.3g} (95% interval, within "
             f"±{margin:g}): the model does not need it as trained.")
        evidence = [ablation.evidence(module)] if ablation is not None else \
            finding_evidence(finding, "drop", low="low", high="high")
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
        fraction, tolerance = num(finding.evidence.get("fraction_removed")), num(finding.evidence.get("tolerance"))
        if fraction is None:
            continue
        within = f" within {points(tolerance)}" if tolerance is not None else ""
        clauses.append(Clause(
            text=(f"It keeps the model's accuracy{within} with {fraction:.0%} of its kernels removed, smallest L1 "
                  "norm first: it uses about half of its capacity or less."),
            tag=PRUNABLE, evidence=finding_evidence(finding, "fraction_removed", "tolerance")))
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
