"""`auditor run` end to end: the installed command writes all three files, and the HTML works in a browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auditor.analyses import ALL_ANALYSES

from tests.conftest import open_page
from tests.models import build_tiny_cnn

REPO = Path(__file__).resolve().parents[2]


def _pages(pdf: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(pdf).pages)


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory: pytest.TempPathFactory, tiny_cnn_npz: Path, tiny_cnn_safetensors: Path) -> Path:
    """One real `auditor run` through the installed console script, shared by the checks below."""
    out = tmp_path_factory.mktemp("e2e") / "audit"
    command = [str(Path(sys.executable).parent / "auditor"), "run", "--model", "tests.models:build_tiny_cnn",
               "--weights", str(tiny_cnn_safetensors), "--data", str(tiny_cnn_npz), "--out", str(out),
               "--batch-size", "8", "--seed", "3", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "report.html" in done.stdout
    return out


def test_run_writes_json_html_and_pdf(audit_dir: Path) -> None:
    assert sorted(p.name for p in audit_dir.iterdir()) == ["audit.json", "report.html", "report.pdf"]
    assert (audit_dir / "report.pdf").read_bytes().startswith(b"%PDF")
    assert _pages(audit_dir / "report.pdf") >= 1
    html = (audit_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_json_has_every_module_the_metadata_and_the_sections(audit_dir: Path, tiny_cnn_safetensors: Path) -> None:
    import hashlib

    audit = json.loads((audit_dir / "audit.json").read_text())
    model = build_tiny_cnn()
    assert len(audit["modules"]) == len(list(model.named_modules()))
    assert [m["name"] for m in audit["modules"]] == [n for n, _ in model.named_modules()]
    meta = audit["metadata"]
    assert meta["weights_sha256"] == hashlib.sha256(tiny_cnn_safetensors.read_bytes()).hexdigest()
    assert meta["seed"] == 3 and meta["torch_version"] and meta["auditor_version"]
    assert {"load", "capture", "inventory", "performance"} <= set(meta["stage_seconds"])
    assert audit["schema_version"] == "1.3"
    assert [s["id"] for s in audit["sections"]] == [  # judge: generators; the LM-only analyses: language models
        a.id for a in ALL_ANALYSES if a.id != "judge" and a.tasks != frozenset({"causal_lm"})]
    assert audit["verdict"]["status"] in ("pass", "warn", "fail")


@pytest.mark.browser
def test_real_report_opens_cleanly_and_sorts_in_chromium(audit_dir: Path, browser: Any) -> None:
    page, log = open_page(browser, audit_dir / "report.html")
    try:
        assert log.errors == []
        assert all(url.startswith(("file:", "data:")) for url in log.requests), log.requests
        names_before = page.eval_on_selector_all("#module-table tbody tr", "rows => rows.map(r => r.cells[0].innerText)")
        header = page.locator("#module-table thead th", has_text="params").first
        header.click()
        params = page.eval_on_selector_all(
            "#module-table tbody tr", "rows => rows.map(r => Number(r.cells[2].dataset.sort))")
        names_after = page.eval_on_selector_all("#module-table tbody tr", "rows => rows.map(r => r.cells[0].innerText)")
        assert params == sorted(params, reverse=True) and names_after != names_before
        assert log.errors == []
    finally:
        page.close()


def test_config_file_runs_the_same_audit(tmp_path: Path, tiny_cnn_npz: Path, tiny_cnn_safetensors: Path,
                                         run_cli: Any) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bars.npz").write_bytes(tiny_cnn_npz.read_bytes())
    (tmp_path / "audit.toml").write_text(f"""
out = "reports/latest"
seed = 3
batch_size = 8

[model]
path = "tests.models:build_tiny_cnn"
weights = "{tiny_cnn_safetensors}"

[data]
path = "data/bars.npz"   # relative to this file

[analyses]
only = ["inventory"]

[analyses.inventory]
dead_unit_warn_fraction = 0.5
""")
    result = run_cli("run", "--config", tmp_path / "audit.toml", "--formats", "json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr
    audit = json.loads((tmp_path / "reports" / "latest" / "audit.json").read_text())
    assert audit["metadata"]["config"]["analyses"]["inventory"]["dead_unit_warn_fraction"] == 0.5
    assert [s["id"] for s in audit["sections"]] == ["inventory"]
    assert audit["not_run"] == {a.id: "skipped by the configuration" for a in ALL_ANALYSES if a.id != "inventory"}
    assert audit["metadata"]["n_samples"] == 24
    override = run_cli("run", "--config", tmp_path / "audit.toml", "--formats", "json", "--quiet",
                       "--max-samples", "10", "--out", tmp_path / "other")
    assert override.exit_code == 0, override.stderr
    assert json.loads((tmp_path / "other" / "audit.json").read_text())["metadata"]["n_samples"] == 10


def test_a_config_in_the_old_form_still_runs_with_a_warning(tmp_path: Path, tiny_cnn_npz: Path, run_cli: Any) -> None:
    """Before 0.2: a top-level `analyses = [...]` list and `[inventory]` / `[performance]` tables."""
    (tmp_path / "audit.toml").write_text(f"""
analyses = ["inventory"]
out = "out"

[model]
path = "tests.models:build_tiny_cnn"

[data]
path = "{tiny_cnn_npz}"

[inventory]
dead_unit_warn_fraction = 0.6
""")
    result = run_cli("run", "--config", tmp_path / "audit.toml", "--formats", "json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert "warning: `analyses = [...]` is deprecated" in result.stderr
    assert "warning: the [inventory] table is deprecated: write [analyses.inventory]" in result.stderr
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit["metadata"]["config"]["analyses"]["only"] == ["inventory"]
    assert audit["metadata"]["config"]["analyses"]["inventory"] == {"dead_unit_warn_fraction": 0.6}
