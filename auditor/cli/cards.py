"""`auditor cards AUDIT`: the module atlas in the terminal (registered by `auditor.cli.main`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from auditor.cli.common import exit_codes, out


def cards(
    audit: Annotated[Path, typer.Argument(help="An audit folder, or its audit.json.", show_default=False)],
    module: Annotated[Optional[str], typer.Option(
        "--module", "-m", help="Only this module's card (or the cards of the modules under it).")] = None,
    tag: Annotated[Optional[str], typer.Option(
        "--tag", "-t", help="Only cards with this tag, or tag kind: 'main path', 'class-specific', 'carries: label'.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON instead.")] = False,
) -> None:
    """Print what each module does: its card (role tags, a statement with its numbers, agreement, what is
    missing). An audit written before schema 1.3 has no cards: they are computed from its sections.

    Examples:

      auditor cards audit/

      auditor cards audit/ --module encoder.layer.3

      auditor cards audit/ --tag class-specific
    """
    import json

    from auditor.errors import AuditorError
    from auditor.report.cards_terminal import print_cards, select_cards
    from auditor.report.io import load_report
    from auditor.synthesis import cards_of

    with exit_codes():
        every = cards_of(load_report(audit))
        chosen = select_cards(every, module=module, tag=tag)
        if module is not None and not chosen:
            raise AuditorError(f"no card for module {module!r}; modules with cards: "
                               f"{', '.join(c.module for c in every[:12])}{', …' if len(every) > 12 else ''}")
    if as_json:
        typer.echo(json.dumps([c.model_dump(mode="json") for c in chosen], indent=2, ensure_ascii=False))
        return
    print_cards(out, chosen, total=len(every))


def register(app: typer.Typer) -> None:
    app.command()(cards)
