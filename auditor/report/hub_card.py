"""`auditor card AUDIT`: a Hugging Face model card, written with `huggingface_hub`'s ModelCard (offline).

YAML metadata with the audit's evaluation results as model-index (accuracy, macro F1 on the audit data),
then the model's atlas in brief (what its most important modules do), then the audit section of
`auditor.report.card`.
"""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from auditor.report.card import render_card
from auditor.report.markdown import escape
from auditor.schema.cards import UNCLEAR
from auditor.schema.report import AuditReport
from auditor.synthesis import cards_of

ATLAS_LINES = 8
_TASKS = {"image": "image-classification", "text": "text-classification"}
_METRICS = (("performance.accuracy", "accuracy", "Accuracy"), ("performance.macro_f1", "f1", "Macro F1"))


def card_data(report: AuditReport) -> ModelCardData:
    """The model card's metadata: name, tags, and the measured results as model-index."""
    meta = report.metadata
    results = []
    task = _TASKS.get(meta.modality) if meta.task == "classification" else None
    if task is not None:
        for key, metric_type, name in _METRICS:
            if key in report.metrics:
                results.append(EvalResult(
                    task_type=task, dataset_type="audit-data", dataset_name=meta.data_source,
                    metric_type=metric_type, metric_name=name, metric_value=round(float(report.metrics[key]), 4),
                    verified=False))
    pipeline = task if task is not None else ("feature-extraction" if meta.task == "embedding" else None)
    return ModelCardData(
        model_name=meta.model_name, library_name="pytorch", pipeline_tag=pipeline,
        tags=["auditor", f"audit-{report.verdict.status}"], eval_results=results or None)


def atlas_summary(report: AuditReport) -> list[str]:
    """The most important cards, one line each: the module, its tags, its statement's first clause."""
    cards = sorted((c for c in cards_of(report) if c.tags != [UNCLEAR]), key=lambda c: -c.importance)
    if not cards:
        return []
    lines = ["## What each module does", "",
             "From the audit's module atlas (role tags are given only when their evidence passed its test):", ""]
    for card in cards[:ATLAS_LINES]:
        headline = card.statement.split(". ", 1)[0].removeprefix(card.module).strip().rstrip(".")
        telling = next((c.text for c in card.clauses if c.tag and c.tag != "main path"), "")
        lines.append(f"- `{card.module}` {escape(headline)}." + (f" {escape(telling)}" if telling else ""))
    if len(cards) > ATLAS_LINES:
        lines.append(f"- … and {len(cards) - ATLAS_LINES} more modules with a role (`auditor cards AUDIT`).")
    return lines + [""]


def render_model_card(report: AuditReport) -> str:
    """The audit as a Hugging Face model card (README.md of a model repository)."""
    meta = report.metadata
    body = "\n".join([f"# {escape(meta.model_name)}", "",
                      f"{escape(meta.model_class)}, {escape(meta.modality)} {escape(meta.task)}, audited with auditor "
                      f"{escape(meta.auditor_version)}.", "", *atlas_summary(report), render_card(report)])
    card = ModelCard(f"---\n{card_data(report).to_yaml()}\n---\n\n{body}")
    return str(card)


__all__ = ["atlas_summary", "card_data", "render_model_card"]
