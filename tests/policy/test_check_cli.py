"""`auditor check`, `auditor diff`, `auditor card`, `auditor policy init` and `auditor run --policy`:
exit codes 0 passed / 1 policy failed / 2 bad input, and the files they write."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from auditor.report.io import save_report
from auditor.schema.report import AuditReport
from tests.conftest import CliResult
from tests.policy.builders import make_report
from tests.policy.subjects import recall

Cli = Callable[..., CliResult]

FAILING = '''
[[rule]]
name = "accurate"
metric = "performance.accuracy"
min = 0.95

[[rule]]
name = "no class regresses"
metric = "performance.accuracy"
max_class_drop = 0.05
'''


@pytest.fixture(scope="module")
def audits(tmp_path_factory: pytest.TempPathFactory, baseline_audit: AuditReport,
           degraded_audit: AuditReport) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audits")
    failed = make_report(metrics={"performance.accuracy": 0.9}, failed="attribution")
    unlabelled = make_report(metrics={"inventory.modules": 5.0}, not_run={"performance": "the audit data has no labels"})
    folders = {"baseline": baseline_audit, "degraded": degraded_audit, "failed": failed, "unlabelled": unlabelled}
    for name, report in folders.items():
        save_report(report, root / name, formats=("json",))
    return {name: root / name for name in folders}


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_check_passes_with_exit_0(run_cli: Cli, audits: dict[str, Path], tmp_path: Path) -> None:
    policy = write(tmp_path, '[[rule]]\nmetric = "performance.accuracy"\nmin = 0.8\n')
    result = run_cli("check", audits["baseline"] / "audit.json", "--policy", policy)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("PASSED All 3 rules passed.")
    assert "exit 0: passed" in result.stdout


def test_check_fails_with_exit_1_naming_the_rules_and_their_numbers(
        run_cli: Cli, audits: dict[str, Path], tmp_path: Path, baseline_audit: AuditReport,
        degraded_audit: AuditReport) -> None:
    policy = write(tmp_path, FAILING)
    junit, markdown = tmp_path / "out" / "junit.xml", tmp_path / "out" / "summary.md"
    result = run_cli("check", audits["degraded"], "--policy", policy, "--baseline", audits["baseline"],
                     "--junit", junit, "--markdown", markdown)
    assert result.exit_code == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "FAILED 2 of 4 rules failed: accurate; no class regresses."
    accuracy = degraded_audit.metrics["performance.accuracy"]
    class_drop = (recall(baseline_audit, 2) - recall(degraded_audit, 2)) * 100
    assert f"✗ fail  accurate: performance.accuracy {accuracy:.4g} < min 0.95" in result.stdout
    assert f"✗ fail  no class regresses: 1 class dropped more than max_class_drop 0.05: '2' −{class_drop:.1f} pts" \
        in result.stdout
    assert "compared  paired on the same 300 samples" in result.stdout
    assert lines[-1] == "  exit 1: the policy failed"
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("4", "2")
    assert f"| ❌ fail | accurate | performance.accuracy {accuracy:.4g} &lt; min 0.95 |" in markdown.read_text(encoding="utf-8")


def test_check_without_a_policy_uses_the_default(run_cli: Cli, audits: dict[str, Path]) -> None:
    result = run_cli("check", audits["baseline"])
    assert result.exit_code == 0 and "built-in default policy" in result.stdout


def test_a_failed_analysis_exits_1(run_cli: Cli, audits: dict[str, Path]) -> None:
    result = run_cli("check", audits["failed"])
    assert result.exit_code == 1
    assert "✗ fail  every analysis completed: 1 of 3 analyses failed: attribution" in result.stdout


def test_a_malformed_policy_exits_2_naming_the_key(run_cli: Cli, audits: dict[str, Path], tmp_path: Path) -> None:
    policy = write(tmp_path, '[[rule]]\nmetric = "performance.accuracy"\nmin_value = 0.9\n')
    result = run_cli("check", audits["baseline"], "--policy", policy)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "rule 1: unknown key 'min_value'" in result.stderr
    assert result.stdout == ""


def test_a_rule_on_a_missing_metric_exits_2_unless_optional(run_cli: Cli, audits: dict[str, Path],
                                                            tmp_path: Path) -> None:
    strict = write(tmp_path, '[[rule]]\nmetric = "performance.accuracy"\nmin = 0.9\n', "strict.toml")
    result = run_cli("check", audits["unlabelled"], "--policy", strict)
    assert result.exit_code == 2
    assert "performance did not run (the audit data has no labels)" in result.stderr
    optional = write(tmp_path, '[[rule]]\nmetric = "performance.accuracy"\nmin = 0.9\noptional = true\n')
    result = run_cli("check", audits["unlabelled"], "--policy", optional)
    assert result.exit_code == 0
    assert "- skip  performance.accuracy ≥ 0.9: skipped (optional): the audit has no metric" in result.stdout


def test_missing_inputs_exit_2(run_cli: Cli, audits: dict[str, Path], tmp_path: Path) -> None:
    assert run_cli("check", tmp_path / "nowhere").exit_code == 2
    assert run_cli("check", audits["baseline"], "--policy", tmp_path / "none.toml").exit_code == 2
    assert run_cli("check", audits["baseline"], "--baseline", tmp_path / "nowhere").exit_code == 2
    assert run_cli("check").exit_code == 2  # usage: the audit argument is missing


def test_help_states_the_exit_codes(run_cli: Cli) -> None:
    for args in (("--help",), ("check", "--help")):
        text = " ".join(run_cli(*args, columns=200).stdout.split())
        assert "passed" in text and "1 the policy failed" in text and "2 bad input or usage" in text


def test_policy_init_writes_a_policy_that_check_reads(run_cli: Cli, audits: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    assert run_cli("policy", "init", path).exit_code == 0
    assert path.read_text(encoding="utf-8").startswith("# auditor release policy")
    again = run_cli("policy", "init", path)
    assert again.exit_code == 2 and "exists; pass --force" in again.stderr
    assert run_cli("policy", "init", path, "--force").exit_code == 0
    result = run_cli("check", audits["degraded"], "--policy", path, "--baseline", audits["baseline"])
    assert result.exit_code == 1 and "✗ fail  no class regresses" in result.stdout


def test_diff_prints_the_changes_and_writes_every_format(
        run_cli: Cli, audits: dict[str, Path], tmp_path: Path, baseline_audit: AuditReport,
        degraded_audit: AuditReport) -> None:
    result = run_cli("diff", audits["baseline"], audits["degraded"], "--out", tmp_path / "diff",
                     "--markdown", tmp_path / "summary.md")
    assert result.exit_code == 0, result.stderr
    assert "1 class significantly worse (2)" in result.stdout
    before, after = recall(baseline_audit, 2), recall(degraded_audit, 2)
    assert f"class '2': {before:.1%} → {after:.1%} (McNemar p = " in result.stdout
    assert "Holm) significant" in result.stdout
    assert sorted(p.name for p in (tmp_path / "diff").iterdir()) == ["diff.html", "diff.json", "diff.md", "diff.pdf"]
    data = json.loads((tmp_path / "diff" / "diff.json").read_text(encoding="utf-8"))
    assert data["paired"] is True and data["classes"][2]["name"] == "2"
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").startswith("## auditor diff: Sequential → Sequential")
    assert run_cli("diff", audits["baseline"], audits["degraded"], "--formats", "json,xml").exit_code == 2


def test_diff_of_an_audit_with_itself(run_cli: Cli, audits: dict[str, Path]) -> None:
    result = run_cli("diff", audits["baseline"], audits["baseline"])
    assert result.exit_code == 0
    assert "No change: every metric, class, finding and module number is the same." in result.stdout


def test_card_writes_markdown(run_cli: Cli, audits: dict[str, Path], tmp_path: Path,
                              baseline_audit: AuditReport) -> None:
    result = run_cli("card", audits["baseline"])
    assert result.exit_code == 0 and result.stdout.startswith("---\n") and "\n## Audit\n" in result.stdout
    assert run_cli("card", audits["baseline"], "--section").stdout.startswith("## Audit\n")
    assert f"| Accuracy | {baseline_audit.metrics['performance.accuracy']:.1%} |" in result.stdout
    assert run_cli("card", audits["baseline"], "--out", tmp_path / "card.md").exit_code == 0
    assert (tmp_path / "card.md").read_text(encoding="utf-8") == result.stdout


def test_run_with_a_policy_judges_the_audit_and_puts_the_verdict_in_the_report(
        run_cli: Cli, tiny_cnn_npz: Path, tiny_cnn_safetensors: Path, tmp_path: Path) -> None:
    policy = write(tmp_path, '[[rule]]\nname = "<b>very</b> accurate"\nmetric = "performance.accuracy"\nmin = 0.99\n')
    out = tmp_path / "audit"
    result = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--weights", tiny_cnn_safetensors,
                     "--data", tiny_cnn_npz, "--out", out, "--formats", "json,html", "--quiet", "--policy", policy,
                     "--junit", tmp_path / "junit.xml")
    assert result.exit_code == 1, result.stderr
    assert "✗ fail  <b>very</b> accurate: performance.accuracy" in result.stdout
    audit = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert audit["policy"]["passed"] is False and audit["policy"]["exit_code"] == 1
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="release-gate"' in html and "&lt;b&gt;very&lt;/b&gt; accurate" in html and "<b>very</b>" not in html
    # the rule, and the built-in one: the tiny CNN is near chance (a fail finding)
    assert "✗ fail  no unwaived fail-severity findings: 1 finding at fail or worse: performance.near_chance" \
        in result.stdout
    assert ET.parse(tmp_path / "junit.xml").getroot().get("failures") == "2"


def test_run_with_a_bad_policy_stops_before_the_audit(run_cli: Cli, tiny_cnn_npz: Path, tmp_path: Path) -> None:
    policy = write(tmp_path, "[[rule]]\nfindings = []\n")
    result = run_cli("run", "--model", "tests.models:build_tiny_cnn", "--data", tiny_cnn_npz, "--out",
                     tmp_path / "audit", "--policy", policy)
    assert result.exit_code == 2 and "rule 1: 'findings'" in result.stderr
    assert not (tmp_path / "audit").exists()


def test_help_shows_config_tables_in_brackets(run_cli: Cli) -> None:
    """Rich markup must not swallow `[analyses.<id>]` as an unknown tag."""
    text = " ".join(run_cli("analyses", "--help", columns=200).stdout.split())
    assert "[analyses] only = [...]" in text and "an [analyses.<id>] table" in text
    listing = run_cli("analyses", columns=250).stdout
    assert "parameters ([analyses.<id>])" in listing


def test_help_paragraphs_flow_to_the_terminals_width(run_cli: Cli) -> None:
    """A docstring's line breaks are not kept: on a wide terminal a paragraph is one line, examples keep theirs."""
    lines = [line.strip() for line in run_cli("demo", "--help", columns=1000).stdout.splitlines()]
    assert any(line.startswith("The digits CNN trains in seconds") and line.endswith("on text made for it. All are "
               "cached after the first run; nothing is downloaded. A second digits release, trained with digit 3 "
               "under-represented on purpose (digits_cnn_v2), is judged against the first: its diff and the failing "
               "check go to OUT/release_diff/.") for line in lines)
    run = [line.strip() for line in run_cli("run", "--help", columns=200).stdout.splitlines()]
    assert "auditor run --config audit.toml --plan" in run  # an example stays on its own line
