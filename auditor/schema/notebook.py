"""The notebook view of an audit (`AuditReport._repr_html_`, `Card._repr_html_`): the verdict and the atlas
as a small HTML fragment, escaped with the standard library (no templates: the schema stands alone)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from auditor.schema.cards import UNCLEAR, Card

if TYPE_CHECKING:
    from auditor.schema.report import AuditReport

_COLOURS = {"pass": "#1a7f37", "warn": "#7d4e00", "fail": "#b42318"}
SHOWN = 8


def card_html(card: Card) -> str:
    """One card: name, identity, tags, the statement's clauses and the agreement lines."""
    tags = " ".join(f'<span style="border:1px solid #c9d1d9;border-radius:9px;padding:0 6px;font-size:11px">'
                    f"{escape(t)}</span>" for t in card.tags)
    shape = "" if card.output_shape is None else \
        " · output (" + ", ".join("*" if d is None else str(d) for d in card.output_shape) + ")"
    clauses = "".join(f"<li>{escape(c.text)}</li>" for c in card.clauses)
    clauses += "".join(f"<li><em>{escape(line)}</em></li>" for line in card.agreement)
    return (f'<div style="border:1px solid #d1d9e0;border-radius:6px;padding:6px 10px;margin:6px 0">'
            f"<b><code>{escape(card.module)}</code></b> <span style=\"color:#59636e\">{escape(card.type)} · "
            f"{card.params:,} parameters{escape(shape)}</span><br>{tags}<ul style=\"margin:4px 0\">{clauses}</ul></div>")


def atlas_html(report: AuditReport) -> str:
    """The verdict, then the most important cards in full and every other card's tags."""
    verdict = report.verdict
    colour = _COLOURS.get(verdict.status, "#3d4753")
    head = (f'<div><b style="color:{colour}">{escape(verdict.status.upper())}</b> {escape(verdict.headline)} '
            f'<span style="color:#59636e">({escape(report.metadata.model_name)}, {len(report.findings)} findings)'
            "</span></div>")
    ranked = sorted((c for c in report.cards if c.tags != [UNCLEAR]), key=lambda c: -c.importance)[:SHOWN]
    shown = {c.module for c in ranked}
    rest = "".join(f"<tr><td><code>{escape(c.module)}</code></td><td>{escape(', '.join(c.tags))}</td></tr>"
                   for c in report.cards if c.module not in shown)
    body = "".join(card_html(c) for c in ranked) if ranked else \
        "<p>No module cards (an audit written before schema 1.3: <code>auditor cards AUDIT</code> computes them).</p>"
    table = f'<details><summary>{len(report.cards) - len(shown)} more modules</summary><table>{rest}</table></details>' \
        if rest else ""
    return f"<div>{head}<h4>What each module does</h4>{body}{table}</div>"


__all__ = ["atlas_html", "card_html"]
