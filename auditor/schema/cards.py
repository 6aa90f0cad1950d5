"""Module cards (audit.json 1.3): per module, what the analyses say it does, joined on its name.

A card holds the module's identity, its role tags, a statement made of clauses, every clause with the
numbers it cites (section, key, value, interval), how the lines of evidence agree, and what is missing.
The synthesis stage (`auditor.synthesis`) writes them; renderers only read them. Plain data, no torch.
"""

from __future__ import annotations

from html import escape

from pydantic import BaseModel, ConfigDict, Field

_FROZEN = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")

UNCLEAR = "unclear"
"""The tag of a module none of whose roles passed its test."""


class CardsConfig(BaseModel):
    """`[cards]`: the thresholds of the role rules (docs/atlas.md says what each decides)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """False: no cards are written (`auditor cards AUDIT` still computes them)."""
    leaves: bool = False
    """True: a card for every leaf module too, not only for the blocks and the leaves a finding names."""
    full_cards: int = Field(8, ge=0)
    """How many cards the report shows in full (the most important); the rest are in the tree."""
    equivalence: float = Field(0.02, ge=0.0)
    """No ablation effect: the 95% interval of the accuracy drop (the embedding change) lies within ±this."""
    probe_margin: float = Field(0.0, ge=0.0)
    """`carries`: the probe's lower interval bound must beat the re-initialized network by more than this
    (and the 95th percentile of shuffled labels)."""
    high_contribution: float = Field(0.5, gt=0.0, le=1.0)
    """High contribution: |gradient × activation| at least this share of the largest among the blocks."""
    realness_drop: float = Field(0.1, ge=0.0)
    """`critical for realness`: removing the module lowers the discriminator's mean realness by this or more
    (with the interval above 0)."""
    diversity_drop: float = Field(0.2, ge=0.0, le=1.0)
    """`critical for diversity`: removing the module lowers the samples' diversity by this share or more."""
    unused_change: float = Field(0.0, ge=0.0, le=1.0)
    """`unused by the decision`: exactly zero gradient and at most this share of predictions changed."""


class Evidence(BaseModel):
    """One number a clause cites, and where it comes from."""

    model_config = _FROZEN

    section: str
    """The analysis id: the report's section `#section-<id>`."""
    key: str
    """The module metric key, or `finding:<id>` for a finding's evidence, or `details:<path>`."""
    value: float | int | str | None
    low: float | None = None
    high: float | None = None
    module: str | None = None
    """Set when the number is another module's (the baseline a clause compares with)."""


class Clause(BaseModel):
    """One sentence of the statement, the tag it supports (None: context), and the numbers it cites."""

    model_config = _FROZEN

    text: str
    tag: str | None = None
    evidence: list[Evidence] = []


class Thumbnail(BaseModel):
    """Evidence to look at: a figure of a section (by id), a token string, or per-class bars."""

    model_config = _FROZEN

    kind: str
    """"figure" (section + figure id), "tokens" (text), "bars" (label -> value)."""
    title: str
    section: str | None = None
    figure: str | None = None
    text: str | None = None
    bars: dict[str, float] = {}


class Card(BaseModel):
    """What one module does, from every analysis that measured it."""

    model_config = _FROZEN

    module: str
    type: str = ""
    block: str | None = None
    """The engine's block kind ("layer", "stage", "embeddings", "head"), None for a leaf carded for a finding."""
    params: int = 0
    output_shape: list[int | None] | None = None
    calls_per_forward: float = 0.0
    time_share: float | None = None
    tags: list[str] = []
    """Role tags, each given only when its evidence passed its test: `main path`, `class-specific: 3`,
    `carries: sentiment`, `redundant`, ...; `unclear` when none did."""
    statement: str = ""
    clauses: list[Clause] = []
    evidence: list[Evidence] = []
    """Every number the statement cites (the clauses' evidence, flattened)."""
    agreement: list[str] = []
    """What the lines of evidence say together: compensation, present but unused, unprobed effect."""
    missing: list[str] = []
    """Analyses that did not run for this module (ids)."""
    missing_why: dict[str, str] = {}
    """Per missing analysis, why: not run (the reason), failed, or this module not measured."""
    thumbnails: list[Thumbnail] = []
    importance: float = 0.0
    """The documented importance the report orders the full cards by (docs/atlas.md)."""

    def _repr_html_(self) -> str:
        """In a notebook: the card (`report.card("layer3.2")`)."""
        return card_html(self)

    def has_tag(self, tag: str) -> bool:
        """The tag exactly, or its kind (`class-specific` matches `class-specific: 3`)."""
        return any(t == tag or t.split(":", 1)[0] == tag for t in self.tags)


class RoleChange(BaseModel):
    """A module whose role tags differ between two audits (`auditor diff`)."""

    model_config = _FROZEN

    module: str
    old: list[str]
    new: list[str]

    @property
    def added(self) -> list[str]:
        return [t for t in self.new if t not in self.old]

    @property
    def removed(self) -> list[str]:
        return [t for t in self.old if t not in self.new]

    def describe(self) -> str:
        """`layer2.1 was class-specific: 3; now redundant`."""
        return f"{self.module} was {', '.join(self.old) or 'not carded'}; now {', '.join(self.new) or 'not carded'}"


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



def tag_kind(tag: str) -> str:
    """`class-specific: 3` -> `class-specific`."""
    return tag.split(":", 1)[0].strip()


__all__ = ["card_html", "Card", "CardsConfig", "Clause", "Evidence", "RoleChange", "Thumbnail", "UNCLEAR", "tag_kind"]
