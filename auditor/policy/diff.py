"""The release diff: what changed between two audits (the last release's and this one's).

Metric and per-class deltas with their significance (paired when both audits saw the same samples),
findings added and resolved, the modules whose numbers moved most, how the module rankings held, and the
figures both audits have. Two audits of different models are compared on the modules they share, and the
diff lists the ones they do not. A pure function of two reports, like every renderer.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from auditor.policy.pairing import Outcomes, Pairing, pair
from auditor.policy.roles import role_changes
from auditor.policy.stats import fisher, holm, mcnemar, spearman
from auditor.schema.diff import (
    ACCURACY,
    TOP_MOVES,
    AuditSummary,
    ChangeTest,
    ClassDelta,
    FigurePair,
    MetricDelta,
    ModuleMove,
    RankCorrelation,
    ReleaseDiff,
    changed,
)
from auditor.schema.findings import Finding
from auditor.schema.report import AuditReport, Section


# --- the pieces, also used by the policy ---------------------------------------------------------------

def _rate_test(old: Outcomes | None, new: Outcomes | None, pairing: Pairing, *, old_mask: np.ndarray | None = None,
               new_mask: np.ndarray | None = None) -> ChangeTest | None:
    if old is None or new is None:
        return None
    a = old.correct if old_mask is None else old.correct[old_mask]
    b = new.correct if new_mask is None else new.correct[new_mask]
    if pairing.paired:
        return mcnemar(a, b)
    return fisher(int(a.sum()), len(a), int(b.sum()), len(b))


def accuracy_delta(old: AuditReport, new: AuditReport, pairing: Pairing) -> MetricDelta:
    """Overall accuracy in both audits, with McNemar's test when paired and Fisher's when not."""
    a, b = old.metrics.get(ACCURACY), new.metrics.get(ACCURACY)
    test = _rate_test(pairing.old, pairing.new, pairing)
    if test is None and a is not None and b is not None:  # no per-sample outcomes: counts from the metrics
        n_old, n_new = int(old.metrics.get("performance.samples", 0)), int(new.metrics.get("performance.samples", 0))
        if n_old and n_new:
            test = fisher(round(a * n_old), n_old, round(b * n_new), n_new)
    if test is None:
        return MetricDelta(metric=ACCURACY, old=a, new=b)
    return MetricDelta(metric=ACCURACY, old=a, new=b, test=test.test, p_value=test.p_value, worse=test.worse,
                       better=test.better)


def _class_counts(report: AuditReport, outcomes_: Outcomes | None) -> dict[str, tuple[int, int]]:
    """{class name: (right, support)} from the per-sample outcomes, else from the per-class table."""
    if outcomes_ is not None:
        counts = {}
        for index, name in enumerate(outcomes_.class_names):
            mask = outcomes_.labels == index
            counts[name] = (int(outcomes_.correct[mask].sum()), int(mask.sum()))
        return counts
    try:
        section = report.section("performance")
    except KeyError:
        return {}
    table = next((t for t in section.tables if t.id == "performance.per_class"), None)
    if table is None or not {"class", "support", "recall"} <= set(table.columns):
        return {}
    at = {c: table.columns.index(c) for c in ("class", "support", "recall")}
    counts = {}
    for row in table.rows:
        support, recall = row[at["support"]], row[at["recall"]]
        if isinstance(support, (int, float)) and isinstance(recall, (int, float)):
            counts[str(row[at["class"]])] = (round(float(recall) * float(support)), int(support))
    return counts


def class_deltas(old: AuditReport, new: AuditReport, pairing: Pairing) -> list[ClassDelta]:
    """Every class both audits have, with its accuracy (recall) in each and a Holm-adjusted test."""
    old_counts, new_counts = _class_counts(old, pairing.old), _class_counts(new, pairing.new)
    rows: list[tuple[str, tuple[int, int], tuple[int, int], ChangeTest | None]] = []
    for name in [n for n in new_counts if n in old_counts]:
        (right_old, n_old), (right_new, n_new) = old_counts[name], new_counts[name]
        test: ChangeTest | None = None
        if pairing.paired and pairing.old is not None and pairing.new is not None:
            index = pairing.new.class_names.index(name)
            mask = pairing.new.labels == index
            test = mcnemar(pairing.old.correct[mask], pairing.new.correct[mask])
        elif n_old and n_new:
            test = fisher(right_old, n_old, right_new, n_new)
        rows.append((name, (right_old, n_old), (right_new, n_new), test))
    tests = {i: row[3] for i, row in enumerate(rows) if row[3] is not None}
    adjusted = dict(zip(tests, holm([t.p_value for t in tests.values()]), strict=True))
    out = []
    for i, (name, (right_old, n_old), (right_new, n_new), test) in enumerate(rows):
        out.append(ClassDelta(
            name=name, support_old=n_old, support_new=n_new, old=right_old / n_old if n_old else None,
            new=right_new / n_new if n_new else None, test=test.test if test else None,
            p_value=test.p_value if test else None, p_holm=adjusted.get(i), worse=test.worse if test else None,
            better=test.better if test else None))
    return out


def module_values(report: AuditReport, section_id: str, key: str) -> dict[str, float] | None:
    """`{module: value}` of one per-module key, or None when the audit has no such section."""
    section = next((s for s in report.sections if s.id == section_id), None)
    return None if section is None else section.module_metric(key)


def _module_names(report: AuditReport) -> list[str]:
    return [row.name for row in report.modules]


def _call_names(report: AuditReport) -> set[str]:
    """The calls of modules used more than once per forward (`pool@2`): their numbers are compared too."""
    return {call.name for row in report.modules for call in row.per_call}


def _moves(old: AuditReport, new: AuditReport, shared: set[str]) -> tuple[list[ModuleMove], list[RankCorrelation]]:
    moves: dict[tuple[str, str, float, float], list[ModuleMove]] = defaultdict(list)
    ranks: list[RankCorrelation] = []
    old_sections = {s.id: s for s in old.sections}
    for section in new.sections:
        before = old_sections.get(section.id)
        if before is None:
            continue
        for key in _keys(section) & _keys(before):
            a, b = before.module_metric(key), section.module_metric(key)
            names = [n for n in b if n in a and n in shared]
            if not names:
                continue
            old_values = np.array([a[n] for n in names], float)
            new_values = np.array([b[n] for n in names], float)
            scale = spread_of(old_values, new_values)
            for name, x, y in zip(names, old_values, new_values, strict=True):
                if changed(float(x), float(y)):
                    score = abs(y - x) / scale if math.isfinite(y - x) and scale > 0 else math.inf
                    moves[(section.id, key, _rounded(float(x)), _rounded(float(y)))].append(ModuleMove(
                        section=section.id, key=key, module=name, old=float(x), new=float(y), score=float(score)))
            if len(names) >= 3:
                ranks.append(RankCorrelation(section=section.id, key=key, rho=spearman(old_values.tolist(), new_values.tolist()),
                                             modules=len(names)))
    # The same numbers at several modules are one move: shown at the module that computes them (a leaf,
    # first in execution order), with the containers and pass-through layers that repeat them listed.
    parents = {row.parent for row in new.modules}
    order = {row.name: (row.name in parents, row.order if row.order is not None else 1 << 30)
             for module in new.modules for row in (module, *module.per_call)}
    merged = []
    for same in moves.values():
        same.sort(key=lambda m: order.get(m.module, (True, 1 << 30)))
        merged.append(same[0].model_copy(update={"also": [m.module for m in same[1:]]}))
    # The largest moves of each analysis: a section with many per-module numbers (gradients) must not
    # crowd out another's (the output statistics).
    section_order = {s.id: i for i, s in enumerate(new.sections)}
    by_section: dict[str, list[ModuleMove]] = defaultdict(list)
    for move in sorted(merged, key=lambda m: -m.score):
        by_section[move.section].append(move)
    top = [m for section in sorted(by_section, key=lambda s: section_order.get(s, 1 << 30))
           for m in by_section[section][:TOP_MOVES]]
    ranks.sort(key=lambda r: (r.section, r.key))
    return top, ranks


SPREAD_FLOOR = 1e-3
"""The spread a move is measured in is at least this share of the key's largest magnitude: values that agree
to 15 digits across modules (5.0e14 "spreads" for a change in the 7th digit) move by nothing a reader sees."""


def spread_of(old: np.ndarray, new: np.ndarray) -> float:
    """What a move is measured in: the standard deviation of the key's values across the shared modules, in
    both audits together (so a key constant in the baseline still has the spread its change made), and at
    least SPREAD_FLOOR of its largest magnitude. 0 only when every value is 0 in both audits."""
    values = np.concatenate([old, new])
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0
    return max(float(np.std(values)), SPREAD_FLOOR * float(np.max(np.abs(values))))


def _rounded(value: float) -> float:
    """`value` to 6 significant digits: a pooling layer's mean is its input's mean, up to float32 sums run
    in another order (1.4346080 against 1.4346079); two modules of their own do not agree to 6 digits both
    before and after."""
    return float(f"{value:.6g}")


def _keys(section: Section) -> set[str]:
    return {key for values in section.module_metrics.values() for key in values}


def _finding_key(finding: Finding) -> str:
    """Findings are matched across releases by their key: id, module and what they are about."""
    return finding.key


def _figures(old: AuditReport, new: AuditReport) -> list[FigurePair]:
    old_figures = {(s.id, f.id): f for s in old.sections for f in s.figures}
    return [FigurePair(section=s.id, id=f.id, title=f.title, old=old_figures[(s.id, f.id)], new=f)
            for s in new.sections for f in s.figures if (s.id, f.id) in old_figures]


def diff_reports(old: AuditReport, new: AuditReport, *, alpha: float = 0.05) -> ReleaseDiff:
    """What changed from `old` (the last release's audit) to `new`.

    Args:
        old: the baseline audit.
        new: the audit of the release candidate.
        alpha: the significance level the diff marks changes with.

    Returns:
        A ReleaseDiff (render it with `auditor diff`, or `auditor.report.diff_html.render_diff_html`).
    """
    pairing = pair(old, new)
    metrics = [accuracy_delta(old, new, pairing) if key == ACCURACY else
               MetricDelta(metric=key, old=old.metrics.get(key), new=new.metrics.get(key))
               for key in dict.fromkeys([*new.metrics, *old.metrics])]
    old_keys = {_finding_key(f) for f in old.findings}
    new_keys = {_finding_key(f) for f in new.findings}
    old_modules, new_modules = _module_names(old), _module_names(new)
    shared = set(old_modules) & set(new_modules)
    moves, ranks = _moves(old, new, shared | (_call_names(old) & _call_names(new)))
    old_ids, new_ids = [s.id for s in old.sections], [s.id for s in new.sections]
    return ReleaseDiff(
        old=AuditSummary.of(old), new=AuditSummary.of(new), paired=pairing.paired, comparison=pairing.description,
        alpha=alpha, metrics=metrics, classes=class_deltas(old, new, pairing),
        findings_added=[f for f in new.findings if _finding_key(f) not in old_keys],
        findings_resolved=[f for f in old.findings if _finding_key(f) not in new_keys],
        findings_unchanged=len(new_keys & old_keys), modules_shared=len(shared),
        modules_only_old=[n for n in old_modules if n not in shared],
        modules_only_new=[n for n in new_modules if n not in shared],
        module_moves=moves, rank_correlations=ranks,
        sections_only_old=[s for s in old_ids if s not in new_ids],
        sections_only_new=[s for s in new_ids if s not in old_ids],
        figures=_figures(old, new), role_changes=role_changes(old, new),
    )


__all__ = ["ACCURACY", "AuditSummary", "ClassDelta", "FigurePair", "MetricDelta", "ModuleMove", "RankCorrelation",
           "ReleaseDiff", "accuracy_delta", "class_deltas", "diff_reports", "module_values"]
