"""The module atlas in the terminal (`auditor cards AUDIT`): one rich panel per card."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from auditor.schema.cards import UNCLEAR, Card, tag_kind

_STYLES = {"main path": "blue", "class-specific": "magenta", "draws class": "magenta", "carries": "green",
           "low-level features": "green", "critical": "dark_orange", "critical for realness": "dark_orange",
           "critical for diversity": "dark_orange", "dead units": "yellow", "not learned": "yellow",
           "unused by the decision": "yellow", "redundant": "grey62", "prunable": "grey62", UNCLEAR: "grey50"}


def select_cards(cards: Sequence[Card], *, module: str | None = None, tag: str | None = None) -> list[Card]:
    """The cards of one module (exact name, else every module under it) and/or with one tag (or tag kind)."""
    chosen = list(cards)
    if module is not None:
        exact = [c for c in chosen if c.module == module]
        chosen = exact or [c for c in chosen if c.module.startswith(f"{module}.")]
    if tag is not None:
        chosen = [c for c in chosen if c.has_tag(tag)]
    return chosen


def card_panel(card: Card) -> Panel:
    identity = f"{card.type or 'module'}{f' · {card.block}' if card.block else ''} · {card.params:,} parameters"
    if card.output_shape:
        identity += " · output (" + ", ".join("*" if d is None else str(d) for d in card.output_shape) + ")"
    if card.time_share is not None:
        identity += f" · {card.time_share:.1%} of the time"
    tags = Text()
    for i, tag in enumerate(card.tags):
        if i:
            tags.append("  ")
        tags.append(f"[{tag}]", style=_STYLES.get(tag_kind(tag), "cyan"))
    lines: list[Text] = [Text(identity, style="dim"), tags]
    for clause in card.clauses:
        source = f"  ({clause.evidence[0].section})" if clause.evidence else ""
        line = Text("• " + clause.text)
        line.append(source, style="dim")
        lines.append(line)
    for agreement in card.agreement:
        lines.append(Text("⇄ " + agreement, style="magenta"))
    return Panel(Group(*lines), title=f"[bold]{escape(card.module)}[/]", title_align="left", expand=True)


def print_cards(console: Console, cards: Sequence[Card], *, total: int) -> None:
    """Every selected card as a panel, then how many of the audit's cards were shown."""
    for card in cards:
        console.print(card_panel(card))
    console.print(f"{len(cards)} of {total} cards", style="dim", highlight=False)


__all__ = ["card_panel", "print_cards", "select_cards"]
