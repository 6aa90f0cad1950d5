"""Markdown for a CI job summary or a pull-request comment: the policy verdict and the release diff.

Everything that comes from users (rule names, module names, class names, finding messages, model names)
goes through `escape`, so a module named `<script>…` or a class named `a|b` stays text, in a table too.
Pure functions of the verdict or diff; nothing here touches torch.
"""

from __future__ import annotations

import math
import re

from auditor.schema.diff import ReleaseDiff
from auditor.schema.diff import format_p
from auditor.schema.verdict import PolicyVerdict, RuleResult, Status

ICONS = {Status.FAIL: "❌ fail", Status.WARN: "⚠️ warn", Status.PASS: "✅ pass", Status.SKIPPED: "⏭️ skipped"}
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
MAX_ROWS = 15


def escape(text: object) -> str:
    """User text made inert inside a Markdown line (a table cell, a list item): HTML entities for <, >, &
    and @ (no mentions), backslashes before emphasis, code, link, table and strike-through marks, and
    newlines as spaces (a table row stays one row). Not for the start of a line: a leading `#` or `1.`
    would still be a heading or a list there, so every caller puts text after its own mark."""
    value = _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "&#64;")


def _cell(text: object) -> str:
    return escape(text) or " "


def _row(*cells: object) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[object]], *, right: frozenset[int] = frozenset()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |", *(_row(*r) for r in rows)]


def _rule_row(result: RuleResult) -> str:
    return f"| {ICONS[result.status]} | {_cell(result.name)} | {_cell(result.message)} |"


def render_verdict_markdown(verdict: PolicyVerdict) -> str:
    """The policy verdict: headline, one table row per rule, the details of failing rules, waivers, notes."""
    icon = "✅" if verdict.passed else "❌"
    lines = [f"## {icon} auditor check: {'passed' if verdict.passed else 'failed'}", "",
             f"**{escape(verdict.headline)}**", "",
             f"- Audit: {escape(verdict.audit)}",
             f"- Policy: {escape(verdict.policy)}"]
    if verdict.baseline:
        lines.append(f"- Baseline: {escape(verdict.baseline)}")
    lines += [f"- Comparison: {escape(verdict.comparison)}", f"- Exit code: {verdict.exit_code}", "",
              "| Status | Rule | Result |", "| --- | --- | --- |"]
    order = {Status.FAIL: 0, Status.WARN: 1, Status.SKIPPED: 2, Status.PASS: 3}
    lines += [_rule_row(r) for r in sorted(verdict.results, key=lambda r: order[r.status])]
    detailed = [r for r in verdict.results if r.details and r.status in (Status.FAIL, Status.WARN)]
    if detailed:
        lines += ["", "<details><summary>Details of the failing and warning rules</summary>", ""]
        for result in detailed:
            lines.append(f"**{escape(result.name)}**")
            lines += ["", *(f"- {escape(d)}" for d in result.details), ""]
        lines.append("</details>")
    if verdict.waived:
        lines += ["", "**Waived findings**", ""]
        lines += [f"- {escape(w.id)}{' on ' + escape(w.module) if w.module is not None else ''}: "
                  f"{escape(w.reason)} (until {w.expires.isoformat()})" for w in verdict.waived]
    if verdict.notes:
        lines += ["", "**Notes**", "", *(f"- {escape(n)}" for n in verdict.notes)]
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "NaN"
    return f"{value:.4g}"


def _signed(value: float | None, *, percent: bool = False) -> str:
    if value is None:
        return "—"
    if percent:
        return f"{value * 100:+.1f} pts"
    return f"{value:+.4g}"


def render_diff_markdown(diff: ReleaseDiff) -> str:
    """The release diff: what changed in metrics, classes, findings and modules, and what is not shared."""
    old, new = diff.old, diff.new
    lines = [f"## auditor diff: {escape(old.model_name)} → {escape(new.model_name)}", "",
             f"**{escape(diff.headline())}**", "",
             f"- Baseline: {escape(old.model_name)}, weights {escape((old.weights_sha256 or '—')[:12])}, "
             f"audited {escape(old.created_at)}, verdict {old.verdict}",
             f"- New: {escape(new.model_name)}, weights {escape((new.weights_sha256 or '—')[:12])}, "
             f"audited {escape(new.created_at)}, verdict {new.verdict}",
             f"- Comparison: {escape(diff.comparison)}; significance at alpha {diff.alpha:g}"]
    changed = [m for m in diff.metrics if m.changed]
    lines += ["", "### Metrics", ""]
    if changed:
        rows: list[list[object]] = []
        for m in changed:
            sig = m.significant(diff.alpha)
            test = "" if m.p_value is None else f"{m.test} p = {format_p(m.p_value)}, " + \
                ("significant" if sig else "within noise")
            rows.append([m.metric, _num(m.old), _num(m.new), _signed(m.delta), test])
        lines += _table(["Metric", "Baseline", "New", "Change", "Test"], rows, right=frozenset({1, 2, 3}))
    else:
        lines.append("No metric changed.")
    moved = sorted((c for c in diff.classes if c.changed), key=lambda c: c.delta or 0.0)
    if moved:
        lines += ["", "### Per-class accuracy (recall)", ""]
        rows = [[c.name, c.support_new, _pct(c.old), _pct(c.new), _signed(c.delta, percent=True),
                 "" if c.p_holm is None else f"{c.test} p = {format_p(c.p_holm)} (Holm)"
                 + (", significant" if c.significant(diff.alpha) else "")] for c in moved[:MAX_ROWS]]
        lines += _table(["Class", "Samples", "Baseline", "New", "Change", "Test"], rows, right=frozenset({1, 2, 3, 4}))
        if len(moved) > MAX_ROWS:
            lines.append(f"\n… and {len(moved) - MAX_ROWS} more classes changed.")
    lines += ["", "### Findings", ""]
    if not diff.findings_added and not diff.findings_resolved:
        lines.append(f"No finding added or resolved ({diff.findings_unchanged} unchanged).")
    for label, findings in (("Added", diff.findings_added), ("Resolved", diff.findings_resolved)):
        for f in findings:
            lines.append(f"- **{label}** {f.severity.value} {escape(f.key)}: {escape(f.message)}")
    if diff.role_changes:
        lines += ["", "### Role changes (the module atlas)", ""]
        lines += [f"- {escape(c.describe())}" for c in diff.role_changes[:MAX_ROWS]]
        if len(diff.role_changes) > MAX_ROWS:
            lines.append(f"- … and {len(diff.role_changes) - MAX_ROWS} more")
    if diff.module_moves:
        lines += ["", "### Modules whose numbers moved most", ""]
        rows = [[_module_cell(m.module, m.also), f"{m.section}.{m.key}", _num(m.old), _num(m.new), _signed(m.delta)]
                for m in diff.module_moves[:MAX_ROWS]]
        lines += _table(["Module", "Metric", "Baseline", "New", "Change"], rows, right=frozenset({2, 3, 4}))
        if len(diff.module_moves) > MAX_ROWS:
            lines.append(f"\nShowing {MAX_ROWS} of {len(diff.module_moves)} moves, the largest of each analysis first "
                         "(diff.json and diff.html have every one).")
    if diff.modules_only_old or diff.modules_only_new:
        lines += ["", "### Modules not shared", "",
                  f"Compared on the {diff.modules_shared} modules both audits have."]
        for label, names in (("Only in the baseline", diff.modules_only_old), ("Only in the new audit", diff.modules_only_new)):
            if names:
                shown = ", ".join(escape(n or "(model)") for n in names[:MAX_ROWS])
                lines.append(f"- {label} ({len(names)}): {shown}{', …' if len(names) > MAX_ROWS else ''}")
    return "\n".join(lines) + "\n"


def _module_cell(module: str, also: list[str]) -> str:
    name = module or "(model)"
    return f"{name} (also {', '.join(n or '(model)' for n in also)})" if also else name


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


__all__ = ["escape", "render_diff_markdown", "render_verdict_markdown"]
