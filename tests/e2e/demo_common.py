"""What the `auditor demo` end-to-end tests share: one CLI run of some demos into a temporary folder, and
reading an audit back. The demos are split over two test files (digits + GAN, MiniLM) so parallel test workers
run them side by side; each file runs its demos once, through the CLI as a user would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def run_demos(tmp_path_factory: pytest.TempPathFactory, *names: str) -> Path:
    from typer.testing import CliRunner

    from auditor.cli import app

    out = tmp_path_factory.mktemp("demo")
    only = [arg for name in names for arg in ("--only", name)]
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quiet", *only])
    assert result.exit_code == 0, result.output
    if set(names) & {"digits_cnn", "digits_cnn_v2", "minilm_sentiment"}:  # the demos trained here on labels
        assert "held-out accuracy at training" in result.output
    return out


def audit_of(out: Path, name: str) -> dict[str, Any]:
    folder = out / name
    assert sorted(p.name for p in folder.iterdir()) == ["audit.json", "report.html", "report.pdf"]
    return json.loads((folder / "audit.json").read_text())


def assert_main_path_said_once(audit: dict[str, Any]) -> None:
    """Replacing any module on the one path every sample takes collapses the model to one class: one finding
    says so for all of them; a critical_module finding is left only to drops that say something else."""
    paths = [f for f in audit["findings"] if f["id"] == "ablation.main_path"]
    assert len(paths) <= 1
    collapsing = [f for f in audit["findings"] if f["id"] == "ablation.critical_module"
                  and "for nearly every sample" in f["message"]]
    assert len(collapsing) <= 1
    rows = next(s for s in audit["sections"] if s["id"] == "ablation")["module_metrics"]
    low = "ablation_embedding_change_low" if audit["metadata"]["task"] == "embedding" else "ablation_drop_low"
    for member in (paths[0]["evidence"]["modules"].split(", ") if paths else []):
        assert rows[member][low] > 0  # the table keeps every grouped module's row
