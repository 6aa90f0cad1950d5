"""The synthesis stage (the module atlas) on a synthetic audit of N modules: pure Python, bar ≤ 1 s for
1,000 modules.

The audit has the shape of a real one: every module in the inventory and the gradients, every block in
the ablation (with per-class drops) and the probes (three properties), a main-path group finding naming a
tenth of the blocks, class-specific, redundant and dead-unit findings. Median of `--runs`.

    python -m benchmarks.synthesis [--modules 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from auditor.schema.findings import Finding, Severity
from auditor.schema.report import AuditReport, BlockRow, Metadata, ModuleRow, Section, decide_verdict
from auditor.synthesis import synthesize

BAR_SECONDS = 1.0
CLASSES = [str(c) for c in range(10)]
PROPERTIES = ["label", "orientation", "frequency"]


def make_audit(modules: int = 1000) -> AuditReport:
    """A synthetic audit: `modules` modules, one block in four (layer.<i>, each with three leaves)."""
    names, rows = [], [ModuleRow(name="", type="Net", depth=0, parent=None, params=0, trainable_params=0,
                                 own_params=0, order=0)]
    layers = max(modules // 4, 1)
    for i in range(layers):
        block = f"layer.{i}"
        names.append(block)
        rows.append(ModuleRow(name=block, type="Block", depth=1, parent="", params=300, trainable_params=300,
                              own_params=0, output_shape=[None, 16], calls_per_forward=1.0, time_share=1 / layers))
        for leaf in ("fc", "norm", "act"):
            rows.append(ModuleRow(name=f"{block}.{leaf}", type={"fc": "Linear"}.get(leaf, "ReLU"), depth=2,
                                  parent=block, params=100, trainable_params=100, own_params=100 * (leaf == "fc")))
    everything = [r.name for r in rows if r.name]
    inventory = {n: {"dead_fraction": 0.0, "units": 16.0} for n in everything}
    gradients = {n: {"abs_grad_x_act": 1.0 / (1 + i % 7), "grad_norm": 0.0 if i % 97 == 0 else 1.0}
                 for i, n in enumerate(everything)}
    ablation: dict[str, dict[str, float]] = {}
    probes: dict[str, dict[str, float]] = {}
    for i, block in enumerate(names):
        drop = 0.3 if i % 10 == 0 else (0.0 if i % 3 == 0 else 0.05)
        ablation[block] = {"ablation_drop": drop, "ablation_drop_low": drop - 0.01 if drop else 0.0,
                           "ablation_drop_high": drop + 0.01 if drop else 0.0, "ablation_changed": drop,
                           **{f"ablation_drop/{c}": drop for c in CLASSES}}
        probes[block] = {k: v for p in PROPERTIES for k, v in {
            f"probe_accuracy/{p}": 0.5 + 0.4 * i / layers, f"probe_accuracy_low/{p}": 0.45 + 0.4 * i / layers,
            f"probe_accuracy_high/{p}": 0.55 + 0.4 * i / layers, f"probe_permutation_accuracy/{p}": 0.3,
            f"probe_random_init_accuracy/{p}": 0.5}.items()}
    properties = [{"property": p, "set": "gratings" if p != "label" else "audit data", "builtin": p != "label",
                   "permutation_threshold": 0.35, "majority_rate": 0.1, "modules": {b: {} for b in names}}
                  for p in PROPERTIES]
    path = names[::10]
    findings = [Finding(id="ablation.main_path", severity=Severity.INFO, message="main path",
                        evidence={"modules": ", ".join(path), "count": len(path), "outermost": ", ".join(path),
                                  "collapsed_to": "0"})]
    findings += [Finding(id="ablation.class_specific", severity=Severity.INFO, module=b, message="specific",
                         evidence={"class": "3", "class_drop": 0.4, "next_class_drop": 0.0, "drop": 0.05,
                                   "low": 0.04, "high": 0.06}) for b in names[5::20]]
    findings += [Finding(id="ablation.redundant", severity=Severity.INFO, module=b, message="redundant",
                         evidence={"drop": 0.0, "low": 0.0, "high": 0.0, "margin": 0.02}) for b in names[3::30]]
    findings += [Finding(id="inventory.dead_units", severity=Severity.WARN, module=f"{b}.act", message="dead",
                         evidence={"dead_units": 4, "units": 16, "dead_fraction": 0.25}) for b in names[7::25]]
    findings += [Finding(id="probes.peak_layer", severity=Severity.INFO, module=names[-1], message="peak",
                         evidence={"property": p}) for p in PROPERTIES]
    sections = [Section(id="inventory", title="Inventory", module_metrics=inventory),
                Section(id="gradients", title="Gradients", module_metrics=gradients),
                Section(id="ablation", title="Ablation", module_metrics=ablation),
                Section(id="probes", title="Probes", module_metrics=probes, details={"properties": properties})]
    meta = Metadata(model_name="synthetic", model_source="benchmark", model_class="Net", modality="image",
                    task="classification", n_samples=100, n_classes=len(CLASSES), class_names=CLASSES,
                    data_source="benchmark", created_at="2025-01-01T00:00:00+00:00", auditor_version="0",
                    torch_version="0", python_version="3.11", platform="benchmark", device="cpu", seed=0, config={})
    return AuditReport(metadata=meta, verdict=decide_verdict(findings), modules=rows, sections=sections,
                       findings=findings, blocks=[BlockRow(name=b, kind="layer", group="layer") for b in names])


def time_synthesis(report: AuditReport, *, runs: int = 5) -> float:
    """The median wall time of `synthesize(report)` over `runs`, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        synthesize(report)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    report = make_audit(args.modules)
    cards = synthesize(report)
    seconds = time_synthesis(report, runs=args.runs)
    verdict = "within" if seconds <= BAR_SECONDS else "ABOVE"
    print(f"synthesis of {len(report.modules) - 1} modules ({len(cards)} cards): {seconds * 1000:.0f} ms "
          f"(median of {args.runs}), {verdict} the {BAR_SECONDS:g} s bar")


if __name__ == "__main__":
    main()
