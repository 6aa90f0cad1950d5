"""Hand-built audits for the policy tests: exactly the metrics, findings and module numbers a test needs."""

from __future__ import annotations

from collections.abc import Sequence

from auditor.schema.findings import Finding, Severity
from auditor.schema.samples import encode_ints
from auditor.schema.report import AuditReport, Metadata, ModuleRow, Section, decide_verdict

MODULES = ("", "features", "features.conv", "features.relu", "head")


def finding(id: str, severity: str = "warn", module: str | None = None, message: str = "something") -> Finding:
    return Finding(id=id, severity=Severity(severity), module=module, message=message)


def make_report(*, metrics: dict[str, float] | None = None, findings: Sequence[Finding] = (),
                module_metrics: dict[str, dict[str, float]] | None = None, modules: Sequence[str] = MODULES,
                predicted: Sequence[int] | None = None, labels: Sequence[int] | None = None,
                class_names: Sequence[str] = ("a", "b", "c"), fingerprint: str | None = "f" * 64,
                not_run: dict[str, str] | None = None, failed: str | None = None, name: str = "model") -> AuditReport:
    """An audit with an inventory section (the module metrics) and a performance section (metrics named
    `performance.*`, per-sample outcomes when given); `failed` adds a failed analysis of that id."""
    metrics = dict(metrics or {})
    sections = [Section(id="inventory", title="Inventory", module_metrics=module_metrics or {},
                        metrics={k.split(".", 1)[1]: v for k, v in metrics.items() if k.startswith("inventory.")})]
    details: dict[str, object] = {"class_names": list(class_names)}
    if predicted is not None and labels is not None:
        details |= {"predicted": encode_ints(predicted), "labels": encode_ints(labels)}
        correct = sum(int(p == y) for p, y in zip(predicted, labels, strict=True))
        metrics.setdefault("performance.accuracy", correct / len(labels))
        metrics.setdefault("performance.samples", float(len(labels)))
    if any(k.startswith("performance.") for k in metrics) or predicted is not None:
        sections.append(Section(id="performance", title="Performance", details=details,
                                metrics={k.split(".", 1)[1]: v for k, v in metrics.items()
                                         if k.startswith("performance.")}))
    if failed is not None:
        try:
            raise RuntimeError("boom")
        except RuntimeError as exc:
            sections.append(Section.failed(failed, failed.title(), exc))
    all_findings = [*findings, *(f for s in sections for f in s.findings)]
    rows = [ModuleRow(name=n, type="Linear", depth=n.count(".") + (n != ""), parent=None if n == "" else
                      (n.rsplit(".", 1)[0] if "." in n else ""), params=0, trainable_params=0, own_params=0,
                      order=i) for i, n in enumerate(modules)]
    meta = Metadata(model_name=name, model_source="test", model_class="Net", modality="tabular",
                    task="classification", n_samples=len(labels) if labels is not None else 10,
                    class_names=list(class_names), data_source="test", data_fingerprint=fingerprint,
                    created_at="2025-01-01T00:00:00+00:00", auditor_version="0", torch_version="0",
                    python_version="3.11", platform="test", device="cpu", seed=0, config={})
    return AuditReport(metadata=meta, verdict=decide_verdict(all_findings), modules=rows, sections=sections,
                       findings=all_findings, metrics=metrics, not_run=not_run or {})
