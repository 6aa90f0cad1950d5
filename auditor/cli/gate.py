"""The release-gate commands of `auditor`: check, diff, card, policy init (registered by `auditor.cli.main`).

Exit codes: 0 passed, 1 the policy failed, 2 bad input or usage. As everywhere in the CLI, `typer.Exit`
is raised outside `exit_codes()` (it is a RuntimeError, never caught as an error).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from auditor.cli.common import exit_codes, out

if TYPE_CHECKING:
    from auditor.policy.rules import Policy
    from auditor.schema.verdict import PolicyVerdict
    from auditor.schema.report import AuditReport

EXIT_CODES_HELP = "Exit codes: 0 passed, 1 the policy failed, 2 bad input or usage."

PolicyOpt = Annotated[Optional[Path], typer.Option(
    "--policy", "-p", help="Release policy (TOML; see [bold]auditor policy init[/]). Default: fail on any unwaived "
    "fail-severity finding or failed analysis.", rich_help_panel="Release gate")]
BaselineOpt = Annotated[Optional[Path], typer.Option(
    "--baseline", "-b", help="The last release's audit (folder or audit.json), for max_drop, max_class_drop, "
    "min_rank_correlation and fail_on_new.", rich_help_panel="Release gate")]
JunitOpt = Annotated[Optional[Path], typer.Option(
    "--junit", help="Write the verdict as JUnit XML here (one test case per rule).", rich_help_panel="Release gate")]
MarkdownOpt = Annotated[Optional[Path], typer.Option(
    "--markdown", help="Write the verdict as Markdown here (CI job summary, pull-request comment).",
    rich_help_panel="Release gate")]


def load_gate(policy: Path | None, baseline: Path | None) -> tuple[Policy, AuditReport | None]:
    """The policy (the built-in default without a file) and the baseline audit, read before any work."""
    from auditor.policy.load import load_policy
    from auditor.policy.rules import Policy
    from auditor.report.io import load_report

    return (load_policy(policy) if policy is not None else Policy(),
            load_report(baseline) if baseline is not None else None)


def judge(report: AuditReport, policy: Policy, baseline: AuditReport | None, *, junit: Path | None,
          markdown: Path | None) -> PolicyVerdict:
    """Evaluates the policy and writes the JUnit and Markdown files asked for."""
    from auditor.policy.evaluate import evaluate_policy
    from auditor.report.release import save_verdict

    verdict = evaluate_policy(report, policy, baseline)
    save_verdict(verdict, junit=junit, markdown=markdown)
    return verdict


def check(
    audit: Annotated[Path, typer.Argument(help="An audit folder, or its audit.json.", show_default=False)],
    policy: PolicyOpt = None,
    baseline: BaselineOpt = None,
    junit: JunitOpt = None,
    markdown: MarkdownOpt = None,
) -> None:
    """Judge an audit against a release policy, and against the last release's audit.

    Exit codes: [bold]0[/] passed, [bold]1[/] the policy failed, [bold]2[/] bad input or usage (a malformed
    policy, an unknown key, a rule on a metric the audit does not have unless the rule is optional).

    Examples:

      auditor check audit/ --policy policy.toml

      auditor check audit/ --policy policy.toml --baseline last-release/ --junit junit.xml --markdown summary.md
    """
    from auditor.report.io import load_report
    from auditor.report.terminal import print_verdict

    with exit_codes():
        rules, previous = load_gate(policy, baseline)
        verdict = judge(load_report(audit), rules, previous, junit=junit, markdown=markdown)
    print_verdict(out, verdict)
    raise typer.Exit(verdict.exit_code)


def diff(
    old: Annotated[Path, typer.Argument(help="The baseline audit (folder or audit.json).", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The new audit (folder or audit.json).", show_default=False)],
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Also write diff.json, diff.html, diff.pdf and diff.md into this folder.")] = None,
    formats: Annotated[str, typer.Option("--formats", help="With --out, comma-separated: json,html,pdf,md.")]
    = "json,html,pdf,md",
    markdown: Annotated[Optional[Path], typer.Option(
        "--markdown", help="Write the diff as Markdown to this file (a CI job summary).")] = None,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Significance level the diff marks changes with.")]
    = 0.05,
) -> None:
    """What changed between two audits: the last release's, then this one's.

    Metrics and per-class accuracy with their paired significance, findings added and resolved, the
    modules whose numbers moved most, figures side by side. Exit codes: 0 done (the diff reports;
    [bold]auditor check[/] decides), 2 bad input or usage.

    Examples:

      auditor diff last-release/ audit/

      auditor diff last-release/audit.json audit/audit.json --out release-diff/
    """
    from auditor.policy.diff import diff_reports
    from auditor.report.io import load_report, write_files
    from auditor.report.markdown import render_diff_markdown
    from auditor.report.release import parse_diff_formats, save_diff
    from auditor.report.terminal import print_diff

    with exit_codes():
        chosen = parse_diff_formats(formats)
        result = diff_reports(load_report(old), load_report(new), alpha=alpha)
        paths = save_diff(result, out_dir, formats=chosen) if out_dir is not None else {}
        if markdown is not None:
            write_files(markdown.parent, {markdown.name: render_diff_markdown(result).encode("utf-8")})
    print_diff(out, result)
    for kind, path in paths.items():
        out.print(f"  {kind}: {path}", highlight=False, markup=False)


def card(
    audit: Annotated[Path, typer.Argument(help="An audit folder, or its audit.json.", show_default=False)],
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write to this file instead of stdout.")]
    = None,
    section: Annotated[bool, typer.Option(
        "--section", help="Only the Markdown audit section, to paste into an existing card.")] = False,
) -> None:
    """Write a Hugging Face model card of an audit: YAML metadata with the evaluation results (model-index),
    what the most important modules do (the atlas), then model, data, metrics, findings and gate."""
    from auditor.report.card import render_card
    from auditor.report.hub_card import render_model_card
    from auditor.report.io import load_report, write_files

    with exit_codes():
        report = load_report(audit)
        text = render_card(report) if section else render_model_card(report)
        if out_file is not None:
            write_files(out_file.parent, {out_file.name: text.encode("utf-8")})
    if out_file is None:
        typer.echo(text, nl=False)


policy_app = typer.Typer(name="policy", help="Release policies for [bold]auditor check[/].", no_args_is_help=True,
                         rich_markup_mode="rich")


@policy_app.command("init")
def policy_init(
    path: Annotated[Path, typer.Argument(help="Where to write the policy.")] = Path("policy.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented default policy: the built-in rules, an example of every kind of rule, a waiver."""
    from auditor.errors import AuditorError
    from auditor.policy.defaults import DEFAULT_POLICY_TOML
    from auditor.report.io import write_files

    with exit_codes():
        if path.exists() and not force:
            raise AuditorError(f"{path} exists; pass --force to overwrite it")
        write_files(path.parent, {path.name: DEFAULT_POLICY_TOML.encode("utf-8")})
    out.print(f"wrote {path}: edit it, then run auditor check AUDIT --policy {path}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Adds check, diff, card and `policy init` to the `auditor` app."""
    app.command()(check)
    app.command()(diff)
    app.command()(card)
    app.add_typer(policy_app)
