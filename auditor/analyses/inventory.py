"""Module inventory: what every module is and what its output looked like over the audit data.

Costs nothing beyond the shared capture (one hooked forward per batch). Findings: non-finite outputs
(where they first appear), dead units (where they die; structural zeros are not dead, see
`auditor.walk.units`), pruned units, reused and unused modules. Per-module numbers go to
`module_metrics`: `dead_units`, `dead_fraction`, `pruned_units`, `zero_fraction`, `output_mean`,
`output_std`, `calls_per_forward`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import ClassVar

from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator, SymmetricalLogLocator
from pydantic import BaseModel, ConfigDict, Field

from auditor.engine.analysis import Analysis, AuditContext
from auditor.schema.findings import DefaultRule, Finding, Findings, FindingSpec, Severity
from auditor.kit.figures import new_figure, to_figure
from auditor.schema.report import Figure, ModuleRow, Section, Table
from auditor.subject import Modality, Task


class InventoryParams(BaseModel):
    """`[analyses.inventory]`: thresholds of the module inventory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dead_unit_warn_fraction: float = Field(0.25, ge=0.0, le=1.0)
    """Warn when more than this fraction of a module's units never activate on the audit data."""
    dead_unit_min_units: int = Field(4, ge=1)
    """Ignore modules with fewer output units than this (a 2-logit head is not 'dead')."""


DEFAULT_RULES = (
    DefaultRule("dead units stay rare", module_metric="inventory.dead_fraction", modules="*", max=0.5, critical=False,
                optional=True, comments={"optional": "inventory can be skipped (--skip inventory)"}),
    DefaultRule("activation scales keep their order across modules", module_metric="inventory.output_std",
                min_rank_correlation=0.8, critical=False, optional=True),
)

FINDINGS = Findings(
    "inventory",
    FindingSpec("non_finite", Severity.FAIL,
                "a module outputs NaN or Inf. It is reported once, at the module where they first appear in execution "
                "order, with how many later modules inherit them"),
    FindingSpec("dead_units", Severity.WARN,
                "more than `dead_unit_warn_fraction` of a module's units (channels of conv maps, features otherwise) "
                "are dead: zero for every audit sample at the output of an activation module (ReLU family) whose "
                "input was not already zero there, or of a layer with parameters whose weights for the unit are not "
                "all zero. Each dead unit is reported once, where it dies. Zeros that a parameter-free module which "
                "is not an activation makes or passes on (zero-padding such as the option-A shortcuts of CIFAR "
                "ResNets, pooling, dropout, containers) are structural and never reported as dead"),
    FindingSpec("pruned_units", Severity.INFO,
                "a layer has units whose weights are all zero (pruned), so they output zero on every sample"),
    FindingSpec("reused_module", Severity.INFO,
                "a module runs more than once per forward: each call is reported as `<module>@<k>`, with its width"),
    FindingSpec("shared_module", Severity.INFO,
                "one module object is registered under several names"),
    FindingSpec("unused_module", Severity.INFO,
                "modules that never ran (containers such as `ModuleList` are exempt)"),
)
"""Every finding the inventory analysis gives (docs/findings.md is written from these)."""


class ModuleInventory(Analysis):
    """Flags modules with NaN/Inf outputs, dead units, more than one call per forward, or no call."""

    id: ClassVar[str] = "inventory"
    title: ClassVar[str] = "Module inventory"
    findings: ClassVar[Findings] = FINDINGS
    default_rules: ClassVar[tuple[DefaultRule, ...]] = DEFAULT_RULES
    params_type: ClassVar[type[BaseModel]] = InventoryParams
    cost_note: ClassVar[str] = "reads the statistics of the shared capture; no pass of its own"
    modalities: ClassVar[frozenset[Modality]] = frozenset({"text", "image", "tabular", "noise"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "embedding", "generation", "causal_lm"})

    def __init__(self, params: InventoryParams | None = None) -> None:
        self.params: InventoryParams = params or InventoryParams()

    def run(self, ctx: AuditContext) -> Section:
        params = self.params
        rows = ctx.rows
        findings = [*_non_finite(rows), *_dead_units(rows, params), *_pruned_units(rows), *_reuse(rows),
                    *_unused(rows)]
        root = rows[0]
        parents = {r.parent for r in rows}
        leaves = [r for r in rows if r.name not in parents]
        metrics = {
            "modules": float(len(rows)),
            "leaf_modules": float(len(leaves)),
            "parameters": float(root.params),
            "trainable_parameters": float(root.trainable_params),
            "non_finite_modules": float(sum(1 for r in rows if r.nan_count or r.inf_count)),
            # Every row with a dead unit, as the module table shows them; the share over the warning threshold
            # is the findings' count (a card saying 0 beside a row with 10/64 dead contradicted the table).
            "modules_with_dead_units": float(sum(1 for r in rows if r.dead_units)),
            "modules_over_dead_threshold": float(sum(1 for f in findings if f.id == FINDINGS.id("dead_units"))),
            "modules_with_pruned_units": float(sum(1 for r in rows if r.pruned_units)),
            "reused_modules": float(sum(1 for r in rows if r.per_call)),
        }
        forwards = ctx.capture.forwards
        summary = (
            f"{len(rows)} modules ({len(leaves)} leaves), {root.params:,} parameters "
            f"({root.trainable_params:,} trainable), walked in {forwards} hooked forward pass"
            f"{'es' * (forwards != 1)} over {len(ctx.subject)} samples."
        )
        return Section(
            id=self.id, title=self.title, summary=summary, metrics=metrics, findings=findings,
            tables=[_by_type(rows)], figures=_profile_figure(rows), module_metrics=_module_metrics(rows),
        )


def _module_metrics(rows: list[ModuleRow]) -> dict[str, dict[str, float]]:
    """Every module's inventory numbers, keyed by module name, for diffs, policies and module cards; a module
    called more than once per forward also each call's, keyed `<module>@<call>`."""
    out: dict[str, dict[str, float]] = {}
    for r in [r for row in rows for r in (row, *row.per_call)]:
        values: dict[str, float] = {"calls_per_forward": r.calls_per_forward}
        if r.units is not None:
            values["units"] = float(r.units)
        if r.dead_units is not None and r.units:
            values["dead_units"] = float(r.dead_units)
            values["dead_fraction"] = r.dead_units / r.units
        if r.pruned_units:
            values["pruned_units"] = float(r.pruned_units)
        if r.zero_fraction is not None:
            values["zero_fraction"] = r.zero_fraction
        if r.mean is not None and r.std is not None:
            values["output_mean"], values["output_std"] = r.mean, r.std
        out[r.name] = values
    return out


_NEVER_CALLED_BY_DESIGN = ("ModuleList", "ModuleDict", "ParameterList", "ParameterDict")


def _non_finite(rows: list[ModuleRow]) -> list[Finding]:
    """One finding at the module where NaN/Inf first appear in execution order, with the spread."""
    bad = sorted((r for r in rows if r.nan_count or r.inf_count), key=lambda r: (r.order is None, r.order))
    if not bad:
        return []
    first = bad[0]
    return [FINDINGS.finding(
        "non_finite", module=first.name or "(model)",
        message=(f"{first.name or 'The model'} ({first.type}) produces non-finite values "
                 f"({first.nan_count:,} NaN, {first.inf_count:,} Inf) on the audit data; "
                 f"{len(bad) - 1} later module{'s' * (len(bad) != 2)} inherit them."),
        evidence={"nan": first.nan_count, "inf": first.inf_count, "affected_modules": len(bad)},
    )]


def _dead_units(rows: list[ModuleRow], params: InventoryParams) -> list[Finding]:
    """Modules that made too many units zero on every sample (each unit counted where it was made)."""
    findings = []
    # a module whose calls differ in width has units per call only: its calls are judged one by one
    for row in [r for module in rows for r in (module.per_call if module.per_call and module.units is None else [module])]:
        if not row.units or not row.dead_units or row.units < params.dead_unit_min_units:
            continue
        fraction = row.dead_units / row.units
        if fraction <= params.dead_unit_warn_fraction:
            continue
        findings.append(FINDINGS.finding(
            "dead_units", module=row.name,
            message=(f"{fraction:.0%} of the units of {call_label(row)} ({row.dead_units} of {row.units}) "
                     "never activate: they are zero on every audit sample."),
            evidence={"dead_units": row.dead_units, "units": row.units, "dead_fraction": round(fraction, 4),
                      "threshold": params.dead_unit_warn_fraction},
        ))
    return findings


def _pruned_units(rows: list[ModuleRow]) -> list[Finding]:
    """Layers with units whose weights are all zero: pruned on purpose, or never trained."""
    findings = []
    for row in rows:
        if row.pruned_units and row.units:
            findings.append(FINDINGS.finding(
                "pruned_units", module=row.name,
                message=(f"{row.pruned_units} of the {row.units} units of {row.name} have all-zero weights "
                         "(pruned) and output zero on every audit sample."),
                evidence={"pruned_units": row.pruned_units, "units": row.units},
            ))
    return findings


def call_label(row: ModuleRow) -> str:
    """"pool (call 2 of 2)" for the row of one call, else the module's name."""
    if row.call is None:
        return row.name
    return f"{row.name.rpartition('@')[0]} (call {row.call} of {row.of_calls})"


def _reuse(rows: list[ModuleRow]) -> list[Finding]:
    findings = []
    for r in rows:
        if r.per_call:
            widths = [c.units for c in r.per_call]
            differ = len(set(widths)) > 1
            shown = ", ".join(f"call {c.call}: {c.units if c.units is not None else '?'} units" for c in r.per_call)
            findings.append(FINDINGS.finding(
                "reused_module", module=r.name,
                message=(f"{r.name} ({r.type}) runs {len(r.per_call)} times per forward pass"
                         + (f" at different widths ({shown})" if differ else f" ({shown})")
                         + f"; each call is reported on its own as {r.per_call[0].name} … {r.per_call[-1].name}, "
                         "and the module's own numbers cover all calls"
                         + (" (its units and dead units per call only)." if differ else ".")),
                evidence={"calls_per_forward": r.calls_per_forward, "calls": len(r.per_call),
                          "units": ", ".join(str(w) for w in widths)},
            ))
        if r.aliases:
            findings.append(FINDINGS.finding(
                "shared_module", module=r.name,
                message=f"{r.name} is also registered as {', '.join(r.aliases)} (one module, several names).",
                evidence={"aliases": ", ".join(r.aliases)},
            ))
    return findings


def _unused(rows: list[ModuleRow]) -> list[Finding]:
    unused = [r for r in rows if r.order is None and r.type not in _NEVER_CALLED_BY_DESIGN]
    if not unused:
        return []
    names = [r.name for r in unused]
    return [FINDINGS.finding(
        "unused_module", module=None,
        message=(f"{len(unused)} module{'s' * (len(unused) != 1)} never ran during the audit: "
                 f"{', '.join(names[:8])}{' …' if len(names) > 8 else ''}."),
        evidence={"count": len(unused), "params": sum(r.params for r in unused if r.parent not in names)},
    )]


def _by_type(rows: list[ModuleRow]) -> Table:
    count: Counter[str] = Counter()
    params: Counter[str] = Counter()
    share: defaultdict[str, float] = defaultdict(float)
    parents = {r.parent for r in rows}
    for r in rows[1:]:
        count[r.type] += 1
        params[r.type] += r.own_params
        if r.name not in parents and r.time_share is not None:  # containers would count children twice
            share[r.type] += r.time_share
    return Table(
        id="inventory.by_type", title="Modules by type",
        columns=["type", "count", "own parameters", "leaf time %"],
        rows=[[t, count[t], params[t], round(100 * share[t], 2)] for t in sorted(count, key=lambda t: -params[t])],
        caption="Own parameters are those registered directly on modules of the type; leaf time % sums the "
                "share of the forward time spent in leaf modules of the type.",
    )


def _tail(name: str, limit: int = 22) -> str:
    """The end of a dotted module name, short enough for an axis label."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _profile_figure(rows: list[ModuleRow]) -> list[Figure]:
    """Output spread and zero fraction of each leaf module, in execution order; a module called more than once per
    forward once per call, where that call runs."""
    parents = {r.parent for r in rows}
    leaves = sorted((c for r in rows if r.name not in parents for c in (r.per_call or [r])
                     if c.order is not None and c.std is not None), key=lambda r: r.order or 0)
    if len(leaves) < 2:
        return []
    xs = list(range(len(leaves)))
    named = len(leaves) <= 28
    with new_figure(8.0, 3.6 if named else 3.0) as (fig, ax):
        ax.plot(xs, [r.std for r in leaves], marker="o", ms=3, lw=1.2, color="#2563eb", label="output std")
        if min(r.std or 0.0 for r in leaves) > 0:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_locator(NullLocator())
        else:  # a constant-zero output: log scale cannot show it
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1e-2))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(axis="y", color="#e5e7eb", lw=0.6)
        # The calls of a module used several times per forward are one module: ring them and say so.
        reused = [i for i, r in enumerate(leaves) if r.call is not None]
        if reused:
            ax.scatter(reused, [leaves[i].std for i in reused], s=70, facecolors="none", edgecolors="#7c3aed",
                       linewidths=1.4, zorder=3)
        if named:
            ax.set_xticks(xs, [_tail(r.name) for r in leaves], rotation=55, ha="right", fontsize=7)
            ax.set_xlabel("leaf module, in execution order")
        else:
            ax.set_xlabel(f"leaf module, in execution order ({len(leaves)} modules)")
        ax.set_ylabel("std of output", color="#2563eb")
        twin = ax.twinx()
        twin.bar(xs, [100 * (r.zero_fraction or 0.0) for r in leaves], color="#f59e0b", alpha=0.35, width=0.8)
        twin.set_ylabel("exact zeros (%)", color="#b45309")
        twin.set_ylim(0, 100)
        ax.set_zorder(twin.get_zorder() + 1)  # the line above the bars
        ax.patch.set_visible(False)
        bad = [i for i, r in enumerate(leaves) if r.nan_count or r.inf_count]
        for i in bad:
            ax.axvline(i, color="#dc2626", lw=1.5)
        ax.set_xlim(-0.6, len(leaves) - 0.4)
        ax.spines["top"].set_visible(False)
        return [to_figure(fig, id="inventory.profile", title="Activation profile",
                          alt="Line chart of each leaf module's output standard deviation with bars of the "
                              "fraction of exact zeros, in execution order",
                          caption="Blue: standard deviation of each leaf module's output (log "
                                  "scale); amber bars: share of exact zeros; red lines: non-finite outputs."
                                  + _reuse_note([r for r in rows if r.per_call and r.name not in parents]))]


def _reuse_note(reused: list[ModuleRow]) -> str:
    """The caption's word on modules that run more than once per forward, drawn once per call."""
    if not reused:
        return ""
    named = ", ".join(f"{r.name} (×{len(r.per_call)})" for r in reused[:3]) + (" …" if len(reused) > 3 else "")
    return (f" Purple rings: the calls of a module called more than once per forward, each drawn where it runs "
            f"with its own statistics (<module>@<call>): {named}.")
