"""The audit indexed for the synthesis: sections, findings per module, groups, probe properties, blocks.

Built once per synthesis, so that each card reads dictionaries (≤ 1 s for 1,000 modules).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from auditor.schema.cards import CardsConfig
from auditor.schema.findings import Finding
from auditor.schema.report import AuditReport, BlockRow, ModuleRow, Section

_WEIGHTED = re.compile(r"Linear|Conv|Embedding|Bilinear|LSTM|GRU|RNN|Attention", re.IGNORECASE)
_PASS_THROUGH = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity", "Flatten",
                 "Unflatten"}


def base_module(name: str) -> str:
    """`layer.0#3` (a unit or head) or `pool@2` (a call) -> the module's own name."""
    return name.split("#", 1)[0].split("@", 1)[0]


def members(finding: Finding) -> list[str]:
    """The modules a group finding names in its evidence ("a, b, c"; a language model's ablation names its
    `targets`, heads as `<attention>#head<h>`, which are not modules)."""
    raw = finding.evidence.get("modules", finding.evidence.get("targets"))
    return [m.strip() for m in raw.split(",") if m.strip() and "#" not in m] if isinstance(raw, str) else []


@dataclass(frozen=True)
class Property:
    """One probed property: its set, whether it is a built-in low-level probe, the shuffled-label bar, and
    the modules in probe order."""

    name: str
    set: str
    builtin: bool
    threshold: float | None
    majority: float | None
    order: list[str]


@dataclass
class AuditView:
    """Read-only indexes over one AuditReport."""

    report: AuditReport
    config: CardsConfig
    sections: dict[str, Section] = field(default_factory=dict)
    rows: dict[str, ModuleRow] = field(default_factory=dict)
    by_module: dict[str, list[Finding]] = field(default_factory=dict)
    groups: dict[str, list[Finding]] = field(default_factory=dict)
    """Module -> the group findings (`*.main_path`) that name it in evidence["modules"]."""
    blocks: list[BlockRow] = field(default_factory=list)
    properties: list[Property] = field(default_factory=list)
    max_contribution: float = 0.0
    contributors: set[str] | None = None
    """The modules whose |gradient × activation| is compared with `max_contribution` (None: the blocks and any
    other module). A causal LM's: its attention and MLP modules, the parts writing to the residual stream (a
    layer's output is the whole stream, and under a final norm the last layer's is zero by construction)."""
    compared_among: str = "the blocks"
    in_series: set[str] = field(default_factory=set)
    """Modules of a cut the gradients analysis does not rank (stages in series: each is an estimate of the
    whole), whose |gradient × activation| says nothing of their share."""
    embedding: bool = False
    generator: bool = False
    first_decodable: dict[str, str | None] = field(default_factory=dict)
    """Per property, the first module in probe order where it passes its test (filled as cards ask)."""
    card_names: frozenset[str] | None = None
    """The modules that get a card (`synthesis.build.card_modules`, filled once when first asked)."""

    @classmethod
    def of(cls, report: AuditReport, config: CardsConfig) -> AuditView:
        view = cls(report=report, config=config)
        view.sections = {s.id: s for s in report.sections if s.error is None}
        view.rows = {row.name: row for row in report.modules}
        for finding in report.findings:
            if finding.module is not None:
                view.by_module.setdefault(base_module(finding.module), []).append(finding)
            for name in members(finding):
                view.groups.setdefault(name, []).append(finding)
        view.embedding = report.metadata.task == "embedding"
        view.generator = "judge" in view.sections or report.metadata.task == "generation"
        view.blocks = list(report.blocks) or _fallback_blocks(view)
        view.properties = _properties(view.sections.get("probes"))
        grads = view.metric("gradients", "abs_grad_x_act")
        view.in_series = _in_series(view.details("gradients").get("cuts"))
        if report.metadata.task == "causal_lm":  # its one cut: the heads and MLPs writing to the residual stream
            cuts = view.details("gradients").get("cuts")
            parts = [str(m) for names in cuts.values() if isinstance(names, list) for m in names] \
                if isinstance(cuts, dict) else []
            view.contributors = {base_module(m) for m in parts}
            view.compared_among = "the attention and MLP outputs writing to the residual stream"
            compared = sorted(view.contributors)
        else:
            compared = [b.name for b in view.blocks if b.name not in view.in_series]
        values = [grads[name] for name in compared if name in grads and math.isfinite(grads[name])]
        view.max_contribution = max(values, default=0.0)
        return view

    def metric(self, section: str, key: str) -> dict[str, float]:
        found = self.sections.get(section)
        return found.module_metric(key) if found is not None else {}

    def value(self, section: str, module: str, key: str) -> float | None:
        found = self.sections.get(section)
        if found is None:
            return None
        value = found.module_metrics.get(module, {}).get(key)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    def measured(self, section: str, module: str) -> bool:
        found = self.sections.get(section)
        return found is not None and module in found.module_metrics

    def findings(self, module: str, finding_id: str) -> list[Finding]:
        """The findings `finding_id` on `module` or on one of its units, heads or calls."""
        return [f for f in self.by_module.get(module, []) if f.id == finding_id]

    def figure_ids(self, section: str) -> set[str]:
        found = self.sections.get(section)
        return {f.id for f in found.figures} if found is not None else set()

    def details(self, section: str) -> dict[str, Any]:
        found = self.sections.get(section)
        return found.details if found is not None else {}


def _in_series(cuts: object) -> set[str]:
    if not isinstance(cuts, dict):
        return set()
    return {str(m) for key, names in cuts.items() if "not ranked" in str(key) and isinstance(names, list) for m in names}


def _fallback_blocks(view: AuditView) -> list[BlockRow]:
    """An audit written before 1.3 has no block list: the modules its probes or its ablation measured
    (units, heads and calls left out), in model order; else the top-level children."""
    names: list[str] = []
    probes = view.details("probes").get("modules")
    if isinstance(probes, list):
        names = [str(n) for n in probes]
    if not names:
        for section in ("ablation", "judge"):
            found = view.sections.get(section)
            if found is not None:
                names = [n for n in found.module_metrics if "#" not in n and "@" not in n and n]
                break
    if not names:
        names = [r.name for r in view.report.modules if r.depth == 1 and r.type not in _PASS_THROUGH]
    order = {row.name: i for i, row in enumerate(view.report.modules)}
    chosen = sorted({n for n in names if n in order}, key=lambda n: order[n])
    return [BlockRow(name=n, kind="stage") for n in chosen]


def _properties(section: Section | None) -> list[Property]:
    if section is None:
        return []
    found: list[Property] = []
    for raw in section.details.get("properties", []) or []:
        if not isinstance(raw, dict) or "property" not in raw:
            continue
        threshold = raw.get("permutation_threshold")
        majority = raw.get("majority_rate")
        found.append(Property(
            name=str(raw["property"]), set=str(raw.get("set", "")), builtin=bool(raw.get("builtin", False)),
            threshold=float(threshold) if isinstance(threshold, (int, float)) else None,
            majority=float(majority) if isinstance(majority, (int, float)) else None,
            order=[str(m) for m in (raw.get("modules") or {})]))
    return found


def has_weights(row: ModuleRow | None) -> bool:
    """A module with a weight matrix of its own (what the weights analysis reads)."""
    return row is not None and row.own_params > 0 and bool(_WEIGHTED.search(row.type))


__all__ = ["AuditView", "Property", "base_module", "has_weights", "members"]
