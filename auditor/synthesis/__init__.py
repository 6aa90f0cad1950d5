"""The synthesis stage: the module atlas, one card per module, joined from every analysis on the module name.

It runs after the analyses and reads only the AuditReport (sections' module metrics, findings, figures,
details, the module rows): no torch, no model, so it works on a saved audit.json as well.
"""

from __future__ import annotations

from auditor.schema.cards import Card, CardsConfig
from auditor.schema.report import AuditReport
from auditor.synthesis.build import card_config, synthesize


def with_cards(report: AuditReport, config: CardsConfig | None = None) -> AuditReport:
    """The report with its `cards` (re)computed; unchanged when `[cards] enabled = false`."""
    config = config or card_config(report)
    if not config.enabled:
        return report
    return report.model_copy(update={"cards": synthesize(report, config)})


def cards_of(report: AuditReport, config: CardsConfig | None = None) -> list[Card]:
    """The audit's cards: those it stores, else (an audit written before 1.3, or with cards off) computed."""
    if report.cards and config is None:
        return list(report.cards)
    return synthesize(report, config)


__all__ = ["card_config", "cards_of", "synthesize", "with_cards"]
