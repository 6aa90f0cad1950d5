"""A model-card section in Markdown that summarizes an audit (`auditor card AUDIT`): what was audited, on
what data, what it measured, what it found, and the release gate's verdict when the audit has one.

Meant to be pasted under a model card's "Evaluation" or "Limitations" heading; everything user-given is
escaped (`auditor.report.markdown.escape`).
"""

from __future__ import annotations

from auditor.schema.findings import Severity
from auditor.report.markdown import escape
from auditor.schema.report import AuditReport

MAX_CLASSES = 20
KEY_METRICS = (
    ("performance.accuracy", "Accuracy", "pct"), ("performance.majority_rate", "Majority-class rate", "pct"),
    ("performance.macro_f1", "Macro F1", "num"), ("performance.ece", "Expected calibration error", "num"),
    ("performance.nll", "Negative log-likelihood", "num"), ("inventory.parameters", "Parameters", "int"),
    ("inventory.modules", "Modules", "int"),
    ("judge.intact_realness", "Discriminator's mean realness of the samples", "num"),
    ("judge.intact_confidence", "Classifier's mean confidence on the samples", "pct"),
    ("judge.intact_condition_accuracy", "Samples recognized as the class asked for", "pct"),
    ("judge.intact_diversity", "Sample diversity (mean pairwise feature distance)", "num"),
)


def _value(value: float, kind: str) -> str:
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "int":
        return f"{int(value):,}"
    return f"{value:.3g}"


def render_card(report: AuditReport) -> str:
    """The audit as a model-card section."""
    meta = report.metadata
    lines = ["## Audit", "",
             f"Audited with auditor {escape(meta.auditor_version)} on {escape(meta.created_at)}: "
             f"**{escape(report.verdict.status.upper())}**, {escape(report.verdict.headline)}", "",
             "| | |", "| --- | --- |",
             f"| Model | {escape(meta.model_name)} ({escape(meta.model_class)}, {escape(meta.modality)} "
             f"{escape(meta.task)}) |",
             f"| Weights sha256 | {escape(meta.weights_sha256 or 'not recorded')} |",
             (f"| Data | {escape(meta.data_source)}, {meta.n_samples:,} samples"
              + (f", {meta.n_classes} classes" if meta.n_classes else "") + " |") if meta.modality != "none"
             else "| Data | none: an audit of the weights alone |",
             f"| Data fingerprint | {escape(meta.data_fingerprint or 'not recorded')} |",
             f"| Seed | {meta.seed} |"]
    metrics = [(label, _value(report.metrics[key], kind)) for key, label, kind in KEY_METRICS if key in report.metrics]
    if metrics:
        lines += ["", "### Measured", "", "| Metric | Value |", "| --- | ---: |",
                  *(f"| {label} | {value} |" for label, value in metrics)]
    lines += _classes(report)
    serious = [f for f in report.findings if f.severity is not Severity.INFO]
    lines += ["", "### Findings", ""]
    if serious:
        for f in serious:
            where = f" ({escape(f.module or 'the model')})" if f.module is not None else ""
            lines.append(f"- **{f.severity.value}** {escape(f.id)}{where}: {escape(f.message)}")
    else:
        lines.append("No failing or warning findings.")
    if report.policy is not None:
        verdict = report.policy
        lines += ["", "### Release gate", "",
                  f"{'Passed' if verdict.passed else 'Failed'} against {escape(verdict.policy)}"
                  + (f" with baseline {escape(verdict.baseline)} ({escape(verdict.comparison)})"
                     if verdict.baseline else "") + f": {escape(verdict.headline)}"]
    limits = [f"{escape(report.analysis_title(k))} did not run ({escape(v)})" for k, v in report.not_run.items()]
    limits += [f"{escape(s.title)} failed ({escape(s.error.type)})" for s in report.sections if s.error is not None]
    measured = f"- Measured on {meta.n_samples:,} samples of {escape(meta.data_source)}; numbers on other data " \
        "may differ." if meta.modality != "none" else \
        "- No audit data: only the weights were read; nothing was measured on the model's inputs or outputs."
    lines += ["", "### Limits of this audit", "", measured]
    lines += [f"- {line}." for line in limits]
    return "\n".join(lines) + "\n"


def _classes(report: AuditReport) -> list[str]:
    try:
        section = report.section("performance")
    except KeyError:
        return []
    table = next((t for t in section.tables if t.id == "performance.per_class"), None)
    if table is None or len(table.rows) > MAX_CLASSES or not {"class", "support", "recall"} <= set(table.columns):
        return []
    at = {c: table.columns.index(c) for c in ("class", "support", "precision", "recall") if c in table.columns}
    lines = ["", "### Per class", "", "| Class | Samples | Precision | Recall |", "| --- | ---: | ---: | ---: |"]
    for row in table.rows:
        cells = [row[at[c]] if c in at else None for c in ("class", "support", "precision", "recall")]
        lines.append(f"| {escape(cells[0])} | {cells[1]} | "
                     + " | ".join(f"{c:.1%}" if isinstance(c, (int, float)) else "—" for c in cells[2:]) + " |")
    return lines


__all__ = ["render_card"]
