"""What the atlas partial (templates/atlas.html.j2) shows: the full cards, the tree of every carded module,
the figures cards point to, and per-class bars as inline SVG. A pure function of the AuditReport."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from auditor.schema.cards import UNCLEAR, Card, CardsConfig, Evidence, tag_kind
from auditor.schema.report import AuditReport, Figure, Table
from auditor.synthesis import card_config, cards_of

_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def card_anchor(module: str) -> str:
    """The HTML id of a module's card: `card-encoder.layer.3`."""
    return "card-" + (_SLUG.sub("-", module) or "model")


_MODULE_COLUMNS = ("module", "layer", "block")


def module_column(table: Table) -> int | None:
    """The column of a section table that names modules (`module`, `layer` or `block`), if any."""
    return next((table.columns.index(c) for c in _MODULE_COLUMNS if c in table.columns), None)


def row_anchor(table_id: str, module: str) -> str:
    """The HTML id of a module's first row in a section table: `row-probes.results.label-features.conv1`."""
    return f"row-{_SLUG.sub('-', table_id)}-{_SLUG.sub('-', module) or 'model'}"


def row_modules(table: Table) -> list[str | None]:
    """Per row of `table`, the module it names (None where it names none, or the table has no module column)."""
    column = module_column(table)
    names = [row[column] if column is not None and column < len(row) else None for row in table.rows]
    return [name if isinstance(name, str) and name else None for name in names]


def row_ids(table: Table) -> list[str | None]:
    """Per row of `table`, its anchor where it is the first row of its module (None elsewhere)."""
    seen: set[str] = set()
    ids: list[str | None] = []
    for name in row_modules(table):
        ids.append(row_anchor(table.id, name) if name is not None and name not in seen else None)
        if name is not None:
            seen.add(name)
    return ids


def tag_class(tag: str) -> str:
    """The CSS class of a tag chip, by its kind."""
    return "tag-" + _SLUG.sub("-", tag_kind(tag)).strip("-").lower()


@dataclass
class TreeNode:
    card: Card
    depth: int
    children: list[TreeNode] = field(default_factory=list)


@dataclass(frozen=True)
class AtlasView:
    cards: list[Card]
    full: list[Card]
    roots: list[TreeNode]
    rows: list[TreeNode]
    """The tree flattened in model order (the PDF's table)."""
    tags: list[str]
    """Every tag kind present, for the filter."""
    figures: dict[tuple[str, str], Figure]
    config: CardsConfig
    rows_by_section: dict[str, list[tuple[Table, set[str]]]] = field(default_factory=dict)
    """Each section's tables with the modules their rows name, for links from a clause to its row."""

    def source(self, evidence: Evidence, module: str) -> str:
        """The href of a clause's source: the row of the module in its section's table, else the section. A
        key's suffix after '/' (a probed property, a class) picks the table of that name when there is one."""
        target = evidence.module or module
        suffix = evidence.key.rsplit("/", 1)[-1] if "/" in evidence.key else ""
        tables = [t for t, names in self.rows_by_section.get(evidence.section, []) if target in names]
        tables.sort(key=lambda t: not (suffix and t.id.endswith(f".{suffix}")))
        return f"#{row_anchor(tables[0].id, target)}" if tables else f"#section-{evidence.section}"


def atlas_view(report: AuditReport) -> AtlasView:
    """The atlas of `report` (its stored cards, or computed for an audit written before 1.3)."""
    config = card_config(report)
    cards = cards_of(report)
    ranked = sorted((c for c in cards if c.importance > 0 and c.tags != [UNCLEAR]), key=lambda c: -c.importance)
    full_names = {c.module for c in ranked[:config.full_cards]}
    full = [c for c in cards if c.module in full_names]
    full.sort(key=lambda c: -c.importance)
    names = {c.module for c in cards}
    nodes = {c.module: TreeNode(card=c, depth=0) for c in cards}
    roots: list[TreeNode] = []
    for card in cards:
        parent = _carded_parent(card.module, names)
        if parent is None:
            roots.append(nodes[card.module])
        else:
            nodes[parent].children.append(nodes[card.module])
    rows: list[TreeNode] = []

    def walk(node: TreeNode, depth: int) -> None:
        node.depth = depth
        rows.append(node)
        for child in node.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    tags = sorted({tag_kind(t) for c in cards for t in c.tags})
    figures = {(s.id, f.id): f for s in report.sections for f in s.figures}
    rows_by_section = {s.id: [(t, {n for n in row_modules(t) if n is not None})
                              for t in s.tables if module_column(t) is not None] for s in report.sections}
    return AtlasView(cards=cards, full=full, roots=roots, rows=rows, tags=tags, figures=figures, config=config,
                     rows_by_section=rows_by_section)


def _carded_parent(module: str, names: set[str]) -> str | None:
    parts = module.split(".")
    for i in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in names:
            return candidate
    return None


def bars_svg(bars: dict[str, float], *, width: int = 220) -> str:
    """Horizontal bars, one per class (recall lost when the module is ablated), as an inline SVG."""
    if not bars:
        return ""
    row, label_w = 14, 64
    top = max(max(abs(v) for v in bars.values()), 1e-9)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" width="{width}" height="{row * len(bars) + 4}" '
             f'role="img" aria-label="recall lost per class">']
    for i, (name, value) in enumerate(bars.items()):
        y = i * row + 2
        length = (width - label_w - 44) * abs(value) / top
        colour = "#b42318" if value > 0 else "#1a7f37"
        parts.append(f'<text x="{label_w - 4}" y="{y + 10}" text-anchor="end" font-size="10">'
                     f'{html.escape(name[:10])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{length:.1f}" height="9" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + length + 3:.1f}" y="{y + 10}" font-size="10">{value * 100:+.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["AtlasView", "TreeNode", "atlas_view", "bars_svg", "card_anchor", "tag_class"]
