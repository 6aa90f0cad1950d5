"""The terminal views of a policy verdict and a release diff: one screen, the numbers that decided.

Everything user-given is printed through `rich.markup.escape`, so a module named `[bold]x` prints as is.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from auditor.schema.diff import ReleaseDiff
from auditor.schema.diff import format_p
from auditor.schema.verdict import PolicyVerdict, RuleResult, Status

_MARK = {Status.FAIL: "[bold red]✗ fail[/]", Status.WARN: "[bold yellow]! warn[/]",
         Status.SKIPPED: "[dim]- skip[/]", Status.PASS: "[green]✓ pass[/]"}
DETAIL_LINES = 4
DIFF_ROWS = 8


def _rule_line(console: Console, result: RuleResult, *, details: bool) -> None:
    console.print(f"  {_MARK[result.status]}  [bold]{escape(result.name)}[/]: {escape(result.message)}",
                  highlight=False, soft_wrap=True)
    if details:
        for line in result.details[:DETAIL_LINES]:
            console.print(f"           {escape(line)}", highlight=False, soft_wrap=True)
        if len(result.details) > DETAIL_LINES:
            console.print(f"           [dim]… {len(result.details) - DETAIL_LINES} more (see --junit or --markdown)[/]",
                          highlight=False)


def print_verdict(console: Console, verdict: PolicyVerdict) -> None:
    """Failing, warning and skipped rules one per line with their numbers; passing rules in one line."""
    colour = "green" if verdict.passed else "red"
    console.print(f"[bold {colour}]{'PASSED' if verdict.passed else 'FAILED'}[/] {escape(verdict.headline)}",
                  highlight=False, soft_wrap=True)
    console.print(f"  [dim]audit[/]     {escape(verdict.audit)}", highlight=False, soft_wrap=True)
    if verdict.baseline:
        console.print(f"  [dim]baseline[/]  {escape(verdict.baseline)}", highlight=False, soft_wrap=True)
        console.print(f"  [dim]compared[/]  {escape(verdict.comparison)}", highlight=False, soft_wrap=True)
    console.print(f"  [dim]policy[/]    {escape(verdict.policy)}", highlight=False, soft_wrap=True)
    for status in (Status.FAIL, Status.WARN, Status.SKIPPED):
        for result in verdict.with_status(status):
            _rule_line(console, result, details=status is not Status.SKIPPED)
    passed = verdict.with_status(Status.PASS)
    if passed:
        names = "; ".join(r.name for r in passed)
        console.print(f"  {_MARK[Status.PASS]}  {len(passed)} rule{'s' * (len(passed) != 1)}: {escape(names)}",
                      highlight=False, soft_wrap=True)
    for waived in verdict.waived:
        where = f" on {waived.module}" if waived.module is not None else ""
        console.print(f"  [dim]waived[/]    {escape(waived.id + where)}: {escape(waived.reason)} "
                      f"(until {waived.expires.isoformat()})", highlight=False, soft_wrap=True)
    for note in verdict.notes:
        console.print(f"  [yellow]note[/]      {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"  exit {verdict.exit_code}: {'passed' if verdict.passed else 'the policy failed'}",
                  highlight=False)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _showing(console: Console, shown: int, total: int, what: str) -> None:
    """A view that lists fewer than it has says so: `showing 4 of 17 module moves`."""
    if total > shown:
        console.print(f"  [dim]showing {shown} of {total} {escape(what)}; `--out DIR` writes every one[/]",
                      highlight=False, soft_wrap=True)


def print_diff(console: Console, diff: ReleaseDiff) -> None:
    """The release diff: changed metrics with their tests, classes, findings, modules that moved most."""
    console.print(f"[bold]DIFF[/] {escape(diff.old.model_name)} → {escape(diff.new.model_name)}: "
                  f"{escape(diff.headline())}", highlight=False, soft_wrap=True)
    console.print(f"  [dim]{escape(diff.comparison)}[/]", highlight=False, soft_wrap=True)
    changed = [m for m in diff.metrics if m.changed]
    if changed:
        table = Table(box=None, padding=(0, 1), header_style="bold", pad_edge=False)
        for column, justify in (("  metric", "left"), ("baseline", "right"), ("new", "right"), ("change", "right"),
                                ("test", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]  # rich's JustifyMethod literal
        for m in changed[:DIFF_ROWS * 2]:
            test = "" if m.p_value is None else f"{m.test} p = {format_p(m.p_value)}" + \
                (" significant" if m.significant(diff.alpha) else " noise")
            table.add_row(f"  {escape(m.metric)}", _num(m.old), _num(m.new),
                          "—" if m.delta is None else f"{m.delta:+.4g}", escape(test))
        console.print(table)
        _showing(console, DIFF_ROWS * 2, len(changed), "changed metrics")
    moved = sorted((c for c in diff.classes if c.changed), key=lambda c: c.delta or 0.0)
    _showing(console, DIFF_ROWS, len(moved), "changed classes")
    for c in moved[:DIFF_ROWS]:
        sig = " [red]significant[/]" if c.significant(diff.alpha) and (c.delta or 0) < 0 else ""
        p = f" ({c.test} p = {format_p(c.p_holm)} Holm)" if c.p_holm is not None else ""
        console.print(f"  class {escape(repr(c.name))}: {c.old:.1%} → {c.new:.1%}{escape(p)}{sig}"
                      if c.old is not None and c.new is not None else f"  class {escape(c.name)}: changed",
                      highlight=False, soft_wrap=True)
    for label, findings in (("[red]+ added[/]", diff.findings_added), ("[green]- resolved[/]", diff.findings_resolved)):
        for f in findings:
            console.print(f"  {label} {f.severity.value} {escape(f.key)}: {escape(f.message)}",
                          highlight=False, soft_wrap=True)
    _showing(console, DIFF_ROWS // 2, len(diff.role_changes), "role changes")
    for change in diff.role_changes[:DIFF_ROWS // 2]:
        console.print(f"  [magenta]role[/] {escape(change.describe())}", highlight=False, soft_wrap=True)
    _showing(console, DIFF_ROWS // 2, len(diff.module_moves), "module moves (the largest first)")
    for move in diff.module_moves[:DIFF_ROWS // 2]:
        also = f" [dim](and {len(move.also)} repeating it)[/]" if move.also else ""
        console.print(f"  [dim]moved[/] {escape(move.module or '(model)')} {escape(move.section + '.' + move.key)}: "
                      f"{_num(move.old)} → {_num(move.new)}{also}", highlight=False, soft_wrap=True)
    if diff.modules_only_old or diff.modules_only_new:
        console.print(f"  [yellow]not shared[/] compared on {diff.modules_shared} shared modules; "
                      f"{len(diff.modules_only_old)} only in the baseline, {len(diff.modules_only_new)} only in the "
                      "new audit", highlight=False)


__all__ = ["print_diff", "print_verdict"]
