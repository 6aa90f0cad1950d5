"""The probes' findings and text: per property, where it is best decodable, or that it is not, and what the
baselines say of it."""

from __future__ import annotations

from typing import Any

from auditor.analyses.probes.findings import FINDINGS
from auditor.analyses.probes.params import ProbesParams
from auditor.analyses.probes.results import PropertyResult
from auditor.engine.analysis import AuditContext
from auditor.schema.findings import Finding, Severity


def property_findings(ctx: AuditContext, res: PropertyResult, peak: str, order: list[str], head: str | None,
                      params: ProbesParams) -> list[Finding]:
    """peak_layer, no_signal, not_learned and lost_in_head for one property."""
    name, top = res.prop.name, res.modules[peak]
    mild = res.prop.builtin
    where = _label(peak, head)
    findings = []
    signal = top.accuracy > res.threshold
    evidence: dict[str, float | int | str] = {
        "property": name, "module": peak, "accuracy": round(top.accuracy, 4), "accuracy_low": round(top.low, 4),
        "accuracy_high": round(top.high, 4), "majority_rate": round(res.majority, 4),
        "permutation_threshold": round(res.threshold, 4), "samples": res.samples}
    if top.random_init is not None:
        evidence["random_init_accuracy"] = round(top.random_init, 4)
    if not signal:
        findings.append(FINDINGS.finding(
            "no_signal", severity=Severity.INFO if mild else Severity.WARN, module=None,
            message=(f"No block carries {name!r} linearly: the best probe ({where}, {top.accuracy:.1%}) does not beat "
                     f"what shuffled labels reach at the best block ({res.threshold:.1%}, 95th percentile over "
                     f"{len(top.permuted)} permutations; majority class {res.majority:.1%})."),
            evidence=evidence))
        return findings
    over_random = f", {top.accuracy - top.random_init:+.1%} over the re-initialized network" \
        if top.random_init is not None else ""
    findings.append(FINDINGS.finding(
        "peak_layer", module=peak,
        message=(f"{name!r} is best decodable at {where}: {top.accuracy:.1%} [{top.low:.1%}, {top.high:.1%}] "
                 f"against {res.threshold:.1%} for shuffled labels and {res.majority:.1%} for the majority class"
                 f"{over_random}."),
        evidence=evidence))
    if top.random_init is not None and top.accuracy - top.random_init < params.not_learned_margin:
        findings.append(FINDINGS.finding(
            "not_learned", module=peak,
            message=(f"At {where}, the re-initialized network carries {name!r} as well as the trained one "
                     f"({top.random_init:.1%} against {top.accuracy:.1%}): the property lives in the input or the "
                     "architecture, not in what training taught."),
            evidence=evidence))
    output = head if head is not None and head in res.modules else order[-1]
    out = res.modules.get(output)
    if out is not None and output != peak and top.accuracy - out.accuracy >= params.lost_margin and out.high < top.low:
        findings.append(FINDINGS.finding(
            "lost_in_head", severity=Severity.INFO if mild else Severity.WARN, module=output,
            message=(f"{name!r} is decodable at {where} ({top.accuracy:.1%}) but much less at "
                     f"{_label(output, head)} ({out.accuracy:.1%}): the later blocks discard it."),
            evidence={**evidence, "output_module": output, "output_accuracy": round(out.accuracy, 4)}))
    return findings


def _label(name: str, head: str | None) -> str:
    return f"the input of the head ({name})" if name == head else name


def summary_text(ctx: AuditContext, results: list[PropertyResult], order: list[str], head: str | None,
             scheme: str | None) -> str:
    blocks = len([n for n in order if n != head])
    what = f"{blocks} block{'s' * (blocks != 1)}" + (" and the input of the head" if head in order else "")
    props = "; ".join(f"{r.prop.name} ({r.probe_set.description if r.probe_set.data is not None else 'audit data'}, "
                      f"{len(r.prop.classes)} classes)" for r in results)
    text = (f"Linear probes on {what} for {len(results)} propert{'ies' if len(results) != 1 else 'y'}: {props}. "
            "Ridge classifiers on standardized features, the penalty chosen by exact leave-one-out inside each of "
            f"{max((r.folds for r in results), default=0)} stratified folds; baselines: permuted labels (the 95th "
            "percentile of the best block decides whether a property is decodable at all)")
    if scheme:
        text += f", the same network re-initialized ({scheme})"
    text += ", and the online code length (MDL)."
    if head in order:
        text += " The head lens applies the model's own head to every block of its input's width."
    notes = [f"{r.prop.name}: {r.note}" for r in results if r.note]
    return text + (" " + " ".join(notes) if notes else "")


def property_detail(res: PropertyResult) -> dict[str, Any]:
    return {"property": res.prop.name, "set": res.probe_set.name, "classes": res.prop.classes, "samples": res.samples,
            "folds": res.folds, "majority_rate": res.majority, "permutation_threshold": res.threshold,
            "builtin": res.prop.builtin, "note": res.note,
            "modules": {n: {"accuracy": r.accuracy, "interval": [r.low, r.high], "random_init": r.random_init,
                            "mdl_bits": r.mdl_bits, "compression": r.compression,
                            "random_compression": r.random_compression, "head_lens": r.head_lens,
                            "alphas": [float(f"{a:.4g}") for a in r.alphas], "alpha_low_end": r.low_end,
                            "alpha_high_end": r.high_end} for n, r in res.modules.items()}}
