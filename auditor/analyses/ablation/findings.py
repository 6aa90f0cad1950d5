"""The ablation analysis's findings, metrics and summary, from its rows of numbers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auditor.analyses.ablation.metrics import Curve, Reference, Row
from auditor.kit.removal import Selection, describe_target, replaced_part
from auditor.engine.prefix import PrefixRun
from auditor.engine.prefix_plan import PassRoute
from auditor.schema.findings import DefaultRule, Finding, Findings, FindingSpec, Severity

if TYPE_CHECKING:
    from auditor.analyses.ablation.params import AblationParams
    from auditor.engine.analysis import AuditContext

DEFAULT_RULES = (
    DefaultRule("the same modules matter when removed", module_metric="ablation.ablation_drop",
                min_rank_correlation=0.5, critical=False, optional=True,
                comments={"min_rank_correlation": "Spearman of the accuracy drops over the modules both releases "
                                                  "ablated",
                          "optional": "ablation drops need a head (a bare encoder has its embedding change instead)"}),
)
_ONE_CLASS_ALONE = DefaultRule("no new module carries one class alone", severity="info", fail_on_new=True,
                               critical=False,
                               comments={"fail_on_new": "only modules (and heads, units) the baseline did not name"})

FINDINGS = Findings(
    "ablation",
    FindingSpec("main_path", Severity.INFO,
                "replacing any of several modules by its mean costs at least `critical_drop` and makes the model "
                "predict one class for nearly every sample (a bare encoder: gives every sample nearly the same "
                "embedding, its spread over samples below 1% of the intact one's): one finding for all of them "
                "(module: the whole model), since each says only that every sample passes through it"),
    FindingSpec("class_specific", Severity.INFO,
                "ablating a module, head or unit takes at least `class_drop` off one class's recall and at least "
                "`class_gap` more than off any other class: names the module and the class", rule=_ONE_CLASS_ALONE),
    FindingSpec("critical_module", Severity.INFO,
                "ablating a module or head costs at least `critical_drop` of accuracy and its interval excludes 0, "
                "and it is not one of the main path's collapse (or it is the only module that collapses the model)",
                rule=_ONE_CLASS_ALONE),
    FindingSpec("redundant", Severity.INFO,
                "an equivalence, not an absence of evidence: the drop's whole interval lies within "
                "±`redundant_margin`, the share of changed predictions is below it even at its one-sided upper bound, "
                "and the KL is below `redundant_kl`: a pruning candidate (reported at the outermost such module). On "
                "few samples the interval is wide, so nothing is called redundant. A bare encoder: the embedding "
                "change's whole interval lies below `redundant_margin` times the median cosine distance between two "
                "samples' embeddings (the margin is in the embeddings' own scale, so a change that moves an embedding "
                "a third of the way to another sample's is never \"redundant\")"),
    FindingSpec("prunable_layer", Severity.INFO,
                "a layer keeps accuracy within `prune_tolerance` with half its kernels removed, smallest L1 norm "
                "first"),
)
"""Every finding the ablation analysis gives (docs/findings.md is written from these)."""


MODULE_KINDS = ("block", "module")


def rank_key(row: Row) -> tuple[float, float, float]:
    """Largest drop first; ties (every layer of a small CNN collapses the output) by loss increase, then KL."""
    def neg(value: float) -> float:
        return -value if math.isfinite(value) else (-math.inf if value > 0 else math.inf)
    return neg(row.drop), neg(row.loss_increase), neg(row.kl)


def describe(row: Row) -> str:
    """The row's name in a sentence."""
    return describe_target(row.target)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}"


@dataclass
class Counts:
    critical: int = 0
    main_path: int = 0
    """Critical modules that are one fact: replacing any of them collapses the model to the same class."""
    class_specific: int = 0
    redundant: int = 0
    prunable: int = 0


def class_gap(row: Row) -> tuple[str, float, float] | None:
    """(class, its recall drop, the largest drop of any other class), or None without classes."""
    if len(row.class_drops) < 2:
        return None
    ordered = sorted(row.class_drops.items(), key=lambda kv: -kv[1] if math.isfinite(kv[1]) else math.inf)
    return ordered[0][0], ordered[0][1], ordered[1][1]


def margin_of(ref: Reference, p: AblationParams) -> float:
    """The equivalence margin in the unit of the row's numbers: accuracy (a fraction) for a classifier; for a
    bare encoder `redundant_margin` of the median cosine distance between two samples' embeddings, since a
    cosine distance of 0.02 is no change for embeddings 0.8 apart and a large one for embeddings 0.05 apart
    (MiniLM's pooled embeddings: a query projection moving them by 0.016 was called redundant while it costs
    5 points of accuracy under a sentiment head)."""
    if ref.embedding:
        return p.redundant_margin * ref.sample_distance if math.isfinite(ref.sample_distance) else 0.0
    return p.redundant_margin


def is_redundant(row: Row, ref: Reference, p: AblationParams) -> bool:
    """An equivalence, not an absence of evidence: the whole interval of the drop lies within ±margin, the
    share of changed predictions is below the margin even at its upper bound, and the KL is small."""
    if ref.embedding:
        return row.high <= margin_of(ref, p)
    return (-p.redundant_margin <= row.low and row.high <= p.redundant_margin
            and row.changed_upper <= p.redundant_margin and row.kl < p.redundant_kl)


def findings_of(ctx: AuditContext, ref: Reference, rows: Sequence[Row], curves: dict[str, Curve],
                p: AblationParams) -> tuple[list[Finding], Counts]:
    """Every ablation finding: the main path and the critical modules, the class-specific ones (not for an
    encoder), the redundant ones, the prunable layers; `counts` says how many of each."""
    counts = Counts()
    told = _told(rows)
    findings = _critical(ref, rows, p, told, counts)
    if not ref.embedding:
        findings += _class_specific(ref, rows, p, told, counts)
    findings += _redundant(ref, rows, p, told, counts)
    findings += _prunable(ref, curves, p, counts)
    return findings, counts


def _told(rows: Sequence[Row]) -> Callable[[Row], bool]:
    """Whether a row gets its own finding. A residual block ablated by its one branch is the very pass of that
    branch module: one finding, the block's (it names the branch), not a second one with the same numbers for
    the branch module."""
    by_branch = {r.target.key for r in rows if r.target.kind == "block" and r.target.branches}

    def told(row: Row) -> bool:
        return bool(row.target.branches) or row.target.key not in by_branch

    return told


def _critical(ref: Reference, rows: Sequence[Row], p: AblationParams, told: Callable[[Row], bool],
              counts: Counts) -> list[Finding]:
    findings: list[Finding] = []
    conf = f"{p.confidence:.0%}"
    critical = sorted((r for r in rows if r.target.kind in (*MODULE_KINDS, "head")
                       and r.drop >= p.critical_drop and r.low > 0), key=rank_key)
    counts.critical = len(critical)
    critical_ids = {id(r) for r in critical}
    path = collapse_group([r for r in rows if id(r) in critical_ids and told(r)])
    grouped = {id(r) for r in path}
    counts.main_path = len(path)
    if path:
        findings.append(_main_path_finding(path, ref, p))
    for row in [r for r in critical if told(r) and id(r) not in grouped]:
        effect = (f"moves the pooled embedding by a cosine distance of {row.drop:.3g} ({conf} interval "
                  f"{row.low:.3g}–{row.high:.3g})") if ref.embedding else (
            f"costs {_pct(row.drop)} points of accuracy ({conf} interval {_pct(row.low)}–{_pct(row.high)}); "
            f"loss +{row.loss_increase:.3g}, KL {row.kl:.3g}")
        collapse = "" if row.collapsed_to is None else "; every sample then gets nearly the same embedding" \
            if ref.embedding else f"; the model then predicts {row.collapsed_to!r} for nearly every sample"
        findings.append(FINDINGS.finding(
            "critical_module", module=row.target.name,
            message=f"Replacing {replaced_part(row.target)} by its {row.target.replaced} {effect}{collapse}.",
            evidence=_evidence(row, ref)))
    return findings


def _class_specific(ref: Reference, rows: Sequence[Row], p: AblationParams, told: Callable[[Row], bool],
                    counts: Counts) -> list[Finding]:
    specific = []
    for row in rows:
        gap = class_gap(row)
        if gap is None or row.collapsed_to is not None or not told(row):
            continue
        name, top, second = gap
        if top >= p.class_drop and top - second >= p.class_gap:
            specific.append((top - second, row, name, top, second))
    specific.sort(key=lambda item: -item[0])
    counts.class_specific = len(specific)
    return [FINDINGS.finding(
        "class_specific", module=row.target.name,
        message=(f"Ablating {describe(row)} takes {_pct(top)} points off the recall of class {name!r} and at "
                 f"most {_pct(max(second, 0.0))} off any other class: what {name!r} needs passes through it."),
        evidence={**_evidence(row, ref), "class": name, "class_drop": top, "next_class_drop": second})
        for _, row, name, top, second in specific]


def _redundant(ref: Reference, rows: Sequence[Row], p: AblationParams, told: Callable[[Row], bool],
               counts: Counts) -> list[Finding]:
    findings: list[Finding] = []
    what = "the pooled embedding's cosine distance" if ref.embedding else "accuracy"
    conf = f"{p.confidence:.0%}"
    redundant = [r for r in rows if r.target.kind in MODULE_KINDS and is_redundant(r, ref, p)]
    names = {r.target.name for r in redundant}
    outermost = [r for r in redundant if not any(r.target.name.startswith(f"{n}.") for n in names)
                 and not (r.target.call is not None and r.target.module in names)]  # the whole covers its calls
    counts.redundant = len(outermost)
    for row in [r for r in outermost if told(r)]:
        inside = sum(1 for n in names if n.startswith(f"{row.target.name}."))
        bound = "" if ref.embedding else (f", at most {_pct(row.changed_upper)}% of predictions change "
                                          f"({_pct(row.changed)}% did) and the KL is {row.kl:.2g}")
        margin = margin_of(ref, p)
        scale = (f", {p.redundant_margin:.0%} of the median cosine distance between two samples' embeddings, "
                 f"{ref.sample_distance:.3g}") if ref.embedding else ""
        findings.append(FINDINGS.finding(
            "redundant", module=row.target.name,
            message=(f"Replacing {replaced_part(row.target)} by its {row.target.replaced} changes "
                     f"{what} by {_signed(row.low, ref)} to {_signed(row.high, ref)} ({conf} interval, within "
                     f"±{_signed(margin, ref, sign=False)}{scale}){bound}: a pruning candidate"
                     + (f" (with the {inside} modules inside it)" if inside else "") + "."),
            evidence={**_evidence(row, ref), "margin": margin}))
    return findings


def _prunable(ref: Reference, curves: dict[str, Curve], p: AblationParams, counts: Counts) -> list[Finding]:
    findings: list[Finding] = []
    what = "the pooled embedding's cosine distance" if ref.embedding else "accuracy"
    for layer, curve in curves.items():
        points = curve.get("l1", [])
        if not points:
            continue
        fraction, value = min(points, key=lambda fv: abs(fv[0] - 0.5))
        lost = value if ref.embedding else ref.accuracy - value
        if abs(fraction - 0.5) > 0.15 or lost > p.prune_tolerance:
            continue
        counts.prunable += 1
        kept = f"a cosine distance of {value:.3g}" if ref.embedding else \
            f"accuracy {_pct(value)}% against {_pct(ref.accuracy)}% intact"
        findings.append(FINDINGS.finding(
            "prunable_layer", module=layer,
            message=(f"{layer} keeps {what} within {_signed(p.prune_tolerance, ref, sign=False)} with {fraction:.0%} of "
                     f"its kernels removed, smallest L1 norm first ({kept}): it uses about half of its capacity or less."),
            evidence={"fraction_removed": fraction, "value": value, "intact": 0.0 if ref.embedding else ref.accuracy,
                      "tolerance": p.prune_tolerance}))
    return findings


def collapse_group(critical: Sequence[Row]) -> list[Row]:
    """The critical rows that say one thing: replacing any of these modules makes the model predict one
    class for nearly every sample. They lie on the one path every sample takes (the embeddings, a stage of a
    plain CNN, a post-norm transformer's LayerNorm); their drops are alike (the accuracy minus the share of
    the class collapsed to, whichever it is) and tell nothing of what each module does. One such module
    alone is not a group: it keeps its own finding. `critical` in model order."""
    members = [row for row in critical if row.collapsed_to is not None and row.target.kind in MODULE_KINDS]
    return members if len(members) > 1 else []


def _outermost(names: Sequence[str]) -> list[str]:
    chosen = set(names)
    return [n for n in names if not any(n.startswith(f"{other}.") for other in chosen if other)]


def _main_path_finding(members: Sequence[Row], ref: Reference, p: AblationParams) -> Finding:
    names = [r.target.name for r in members]
    outer = _outermost(names)
    drops = [r.drop for r in members]
    low, high = min(drops), max(drops)
    span = f"{_pct(low)} points" if _pct(low) == _pct(high) else f"{_pct(low)}–{_pct(high)} points"
    shown = ", ".join(outer[:6]) + (f" and {len(outer) - 6} more" if len(outer) > 6 else "")
    inner = len(names) - len(outer)
    inside = f" (with {inner} of the modules inside {'it' if len(outer) == 1 else 'them'})" if inner else ""
    replaced = sorted({r.target.replaced for r in members})
    classes: dict[str, int] = {}
    for row in members:
        assert row.collapsed_to is not None
        classes[row.collapsed_to] = classes.get(row.collapsed_to, 0) + 1
    ranked = sorted(classes.items(), key=lambda kv: -kv[1])
    if ref.embedding:
        low_text, high_text = f"{low:.3g}", f"{high:.3g}"
        what = (f"The model gives every sample nearly the same embedding when any of {len(names)} modules on its main "
                f"path is replaced by its {' or '.join(replaced)}: {shown}{inside}. Each moves the pooled embedding by "
                f"a cosine distance of {low_text if low_text == high_text else f'{low_text}–{high_text}'}, and the "
                "embeddings' spread over the samples falls below 1% of the intact one's")
    else:
        predicts = f"{ranked[0][0]!r}" if len(ranked) == 1 else \
            "one class (" + ", ".join(f"{name!r} for {count}" for name, count in ranked) + ")"
        what = (f"The model collapses to one class when any of {len(names)} modules on its main path is replaced "
                f"by its {' or '.join(replaced)}: {shown}{inside}. Each costs {span} of accuracy, and the model "
                f"then predicts {predicts} for nearly every sample")
    return FINDINGS.finding(
        "main_path", module=None,
        message=(f"{what}: every sample passes through them, so this says they are on the path, not what each does "
                 "(the ablation table has every row)."),
        evidence={"modules": ", ".join(names), "count": len(names), "outermost": ", ".join(outer),
                  "collapsed_to": ", ".join(name for name, _ in ranked), "drop_min": low, "drop_max": high,
                  "critical_drop": p.critical_drop})


def _signed(value: float, ref: Reference, *, sign: bool = True) -> str:
    if ref.embedding:
        return f"{value:.3g}"
    return f"{value * 100:+.1f} points" if sign else f"{value * 100:.1f} points"


def _evidence(row: Row, ref: Reference) -> dict[str, float | int | str | bool | None]:
    evidence: dict[str, float | int | str | bool | None] = {
        "drop" if not ref.embedding else "embedding_change": row.drop, "low": row.low, "high": row.high,
        "replaced_by": row.target.replaced}
    if not ref.embedding:
        evidence.update({"loss_increase": row.loss_increase, "kl": row.kl, "changed": row.changed})
    if row.target.branches:
        evidence["branches"] = ", ".join(row.target.branches)
    return evidence


def metrics_of(ref: Reference, rows: Sequence[Row], curves: dict[str, Curve], counts: Counts, passes: int,
               routes: Sequence[PassRoute | None]) -> dict[str, float]:
    modules = [r for r in rows if r.target.kind in MODULE_KINDS]
    drops = [r.drop for r in modules if math.isfinite(r.drop)]
    calls = sum(1 for r in modules if r.target.call is not None)
    metrics = {
        "ablated_modules": float(len(modules) - calls),
        "ablated_heads": float(sum(1 for r in rows if r.target.kind == "head")),
        "ablated_units": float(sum(1 for r in rows if r.target.kind == "unit")),
        "pruned_layers": float(len(curves)),
        "max_embedding_change" if ref.embedding else "max_drop": max(drops) if drops else 0.0,
        "critical_modules": float(counts.critical), "main_path_modules": float(counts.main_path),
        "class_specific": float(counts.class_specific),
        "redundant_modules": float(counts.redundant), "prunable_layers": float(counts.prunable),
        "passes": float(passes),
    }
    if calls:
        metrics["ablated_calls"] = float(calls)  # single calls of modules used more than once per forward
    known = [r for r in routes if r is not None]
    if known:
        metrics["full_forward_passes"] = float(sum(1 for r in known if r.full_forward))
    return metrics  # the share of a forward each pass ran is timed, so it is a detail: metrics repeat exactly


def summary_of(ctx: AuditContext, ref: Reference, selection: Selection, rows: Sequence[Row],
               routes: Sequence[PassRoute | None], run: PrefixRun | None, p: AblationParams) -> str:
    modules = [r for r in rows if r.target.kind in MODULE_KINDS and r.target.call is None]
    branched = [r for r in modules if r.target.branches]
    parts = [f"{'Mean' if p.mode == 'mean' else 'Zero'} ablation of {len(modules)} module{'s' * (len(modules) != 1)}"]
    reused = [r.target for r in modules if r.target.calls > 1]
    if reused:
        parts.append(f" ({len(reused)} called more than once per forward, ablated as a whole, every call by its own "
                     f"{'mean' if p.mode == 'mean' else 'zeros'}, and each call alone: "
                     + ", ".join(f"{t.name} = all {t.calls} calls, {t.name}@1 … {t.name}@{t.calls} = one call"
                                 for t in reused[:2]) + (", …" if len(reused) > 2 else "") + ")")
    if branched:
        parts.append(f" ({len(branched)} residual block{'s' * (len(branched) != 1)} ablated by {'their' if len(branched) > 1 else 'its'} "
                     "branches: what they add to the stream, since replacing the stream itself collapses every "
                     "block alike)")
    extra = []
    heads = sum(1 for r in rows if r.target.kind == "head")
    if heads:
        extra.append(f"{heads} attention heads ({len(selection.head_modules)} layers × {selection.heads})")
    units = sum(1 for r in rows if r.target.kind == "unit")
    if units:
        extra.append(f"{units} single units of {', '.join(selection.unit_layers)}")
    if selection.prune:
        extra.append(f"{len(selection.prune)} pruning steps on {len({s.layer for s in selection.prune})} layer"
                     f"{'s' * (len({s.layer for s in selection.prune}) != 1)}")
    if extra:
        parts.append(", " + ", ".join(extra[:-1]) + (" and " if len(extra) > 1 else "") + extra[-1])
    n = len(ref.scores)
    against = ("the intact pooled embedding (1 − cosine similarity)" if ref.embedding else
               "the labels" if ctx.subject.labels is not None else "the intact model's own predictions (no labels)")
    parts.append(f", measured on {n} samples against {against}, with {p.confidence:.0%} paired bootstrap "
                 f"intervals over the samples.")
    zeroed = sorted({r.target.name for r in rows if r.target.replaced.startswith("zeros (")})
    if zeroed and p.mode == "mean":
        parts.append(f" Without a per-unit mean, zeroed instead: {', '.join(zeroed[:4])}{', …' if len(zeroed) > 4 else ''}.")
    known = [r for r in routes if r is not None]
    if run is not None and known:
        shares = [1.0 - r.skipped for r in known if r.skipped is not None]
        full = [r for r in known if r.full_forward]
        if shares:
            parts.append(f" Cached prefixes: each pass ran on average {sum(shares) / len(shares):.0%} of a full "
                         f"forward ({sum(run.cached.values()) / 2**20:.0f} MiB of recorded outputs of {len(run.cached)} "
                         "modules)")
        if full:
            reasons = sorted({f"{r.first}: {r.full_forward}" for r in full})
            parts.append(f"; {len(full)} ran the whole model ({'; '.join(reasons[:3])}{'; …' if len(reasons) > 3 else ''})")
        parts.append(".")
    elif not known:
        parts.append(" Each pass ran the whole model (the executor runs passes elsewhere).")
    return "".join(parts)


__all__ = ["Counts", "class_gap", "describe", "findings_of", "is_redundant", "metrics_of", "rank_key", "summary_of"]
