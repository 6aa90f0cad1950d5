"""The notebook view of an audit (`AuditReport._repr_html_`, `Card._repr_html_`): the verdict and the atlas
as a small HTML fragment, escaped with the standard library (no templates: the schema stands alone)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from auditor.schema.cards import UNCLEAR, Card, card_html

_COLOURS = {"pass": "#1a7f37", "warn": "#7d4e00", "fail": "#b42318"}
SHOWN = 8


def atlas_html(*, status: str, headline: str, model_name: str, findings: int, cards: Sequence[Card]) -> str:
    """The verdict, then the most important cards in full and every other card's tags."""
    colour = _COLOURS.get(status, "#3d4753")
    head = (f'<div><b style="color:{colour}">{escape(status.upper())}</b> {escape(headline)} '
            f'<span style="color:#59636e">({escape(model_name)}, {findings} findings)</span></div>')
    ranked = sorted((c for c in cards if c.tags != [UNCLEAR]), key=lambda c: -c.importance)[:SHOWN]
    shown = {c.module for c in ranked}
    rest = "".join(f"<tr><td><code>{escape(c.module)}</code></td><td>{escape(', '.join(c.tags))}</td></tr>"
                   for c in cards if c.module not in shown)
    body = "".join(card_html(c) for c in ranked) if ranked else \
        "<p>No module cards (an audit written before schema 1.3: <code>auditor cards AUDIT</code> computes them).</p>"
    table = f'<details><summary>{len(cards) - len(shown)} more modules</summary><table>{rest}</table></details>' \
        if rest else ""
    return f"<div>{head}<h4>What each module does</h4>{body}{table}</div>"


__all__ = ["atlas_html"]
