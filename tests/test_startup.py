"""`auditor check`, `card` and `diff` read audit.json files: they start without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from auditor.report.io import save_report
from tests.policy.builders import finding, make_report

HEAVY = ("torch", "transformers", "captum", "matplotlib", "weasyprint")


def test_the_gate_commands_and_import_auditor_do_not_import_torch(tmp_path: Path) -> None:
    save_report(make_report(findings=[finding("inventory.dead_units", module="features.relu")]), tmp_path / "a",
                formats=("json",))
    script = f"""
import sys
from typer.testing import CliRunner
import auditor
from auditor.cli.main import app
runner = CliRunner()
codes = [runner.invoke(app, args).exit_code for args in (
    ["check", {str(tmp_path / "a")!r}], ["card", {str(tmp_path / "a")!r}],
    ["diff", {str(tmp_path / "a")!r}, {str(tmp_path / "a")!r}], ["check", "--help"])]
assert auditor.Severity.WARN.value == "warn"
print(codes, sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[0, 0, 0, 0] []", result.stderr
