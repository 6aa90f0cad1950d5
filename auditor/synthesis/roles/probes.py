"""The role rule that reads the probes (`carries: <property>`), and the reading of a probe's numbers it shares with the
card's agreement checks."""

from __future__ import annotations

from auditor.schema.cards import Clause, Evidence
from auditor.synthesis.roles.common import LOW_LEVEL, interval, pct
from auditor.synthesis.view import AuditView


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
