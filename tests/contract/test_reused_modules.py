"""A module called more than once per forward at different widths, through every analysis: the PyTorch tutorial
CNN, whose one `self.pool` pools 6 channels at its first call and 16 at its second (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import auditor
from auditor.analyses import ALL_ANALYSES
from auditor.config import AnalysesConfig, AuditConfig
from auditor.schema.report import AuditReport
from tests.models import build_tutorial_net

# Every analysis, kept small: what is checked here is that each accepts the reused pool and reports it per call.
_QUICK = AnalysesConfig(
    features={"modules": ["pool", "conv2"], "steps": 4, "units_per_module": 2, "feature_map_samples": 2},
    ablation={"bootstrap": 100, "max_units": 4, "prune_fractions": [0.5]},
    probes={"permutations": 5, "mdl": False},
    gradients={"conductance_samples": 8, "conductance_steps": 4},
)


def _images(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Random 3×32×32 images with random labels over 10 classes: no model can beat chance on them."""
    g = np.random.default_rng(0)
    return g.random((n, 3, 32, 32), dtype=np.float32), g.integers(0, 10, n)


@pytest.fixture(scope="module")
def report() -> AuditReport:
    return auditor.audit(build_tutorial_net(), _images(), config=AuditConfig(batch_size=16, analyses=_QUICK))


def test_every_analysis_runs_on_the_tutorial_cnn_and_the_untrained_net_is_near_chance(report: AuditReport) -> None:
    applicable = {a.id for a in ALL_ANALYSES if "classification" in a.tasks and "image" in a.modalities}
    assert {s.id for s in report.sections} == applicable
    assert [s.id for s in report.sections if s.error is not None] == []
    assert report.findings_by_id("performance.near_chance")


def test_the_inventory_reports_the_pool_per_call_with_its_own_width(report: AuditReport) -> None:
    pool = next(r for r in report.modules if r.name == "pool")
    assert [(c.name, c.units, c.output_shape) for c in pool.per_call] == \
        [("pool@1", 6, [None, 6, 14, 14]), ("pool@2", 16, [None, 16, 5, 5])]
    inventory = report.section("inventory").module_metrics
    assert (inventory["pool@1"]["units"], inventory["pool@2"]["units"]) == (6.0, 16.0)
    assert "units" not in inventory["pool"] and inventory["pool"]["calls_per_forward"] == 2.0
    reused = report.findings_by_id("inventory.reused_module")
    assert [f.module for f in reused] == ["pool"] and "6 units" in reused[0].message and "16 units" in reused[0].message


def test_ablation_has_the_pool_as_a_whole_and_each_call_alone(report: AuditReport) -> None:
    ablation = report.section("ablation")
    calls = ablation.module_metric("ablation_calls")
    assert calls == {"pool": 2.0, "pool@1": 1.0, "pool@2": 1.0}
    ranked = {row[1]: row[2] for row in ablation.tables[0].rows}
    assert ranked["pool"] == "mean of each call" and ranked["pool@2"] == "mean (call 2 only)"
    # with call 2 replaced by a constant nothing downstream depends on call 1: whole = call 2 alone
    whole, second = ablation.module_metrics["pool"], ablation.module_metrics["pool@2"]
    assert whole["ablation_kl"] == pytest.approx(second["ablation_kl"], rel=1e-6, abs=1e-12)


def test_gradients_features_and_probes_are_per_call(report: AuditReport) -> None:
    gradients = report.section("gradients").module_metric("grad_x_act")
    assert gradients["pool"] == pytest.approx(gradients["pool@1"] + gradients["pool@2"], rel=1e-4, abs=1e-9)
    features = report.section("features")
    assert {"pool@1", "pool@2"} <= set(features.module_metrics) and "pool" not in features.module_metrics
    shown = {row[0]: row[1] for row in features.tables[0].rows}
    assert shown["pool@1"] < 6 and {"pool@1", "pool@2"} <= set(shown)
    probes = report.section("probes").module_metric("probe_accuracy/label")
    assert {"pool@1", "pool@2"} <= set(probes) and "pool" not in probes


def test_the_html_report_shows_each_call_under_the_module(report: AuditReport, tmp_path: Path) -> None:
    auditor.save_report(report, tmp_path, formats=("html",))
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "call 1 of 2" in html and "call 2 of 2" in html


def test_the_cli_audits_the_tutorial_cnn(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from auditor.cli import app

    x, y = _images(24)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["run", "--model", "tests.models:build_tutorial_net", "--data",
                                      str(tmp_path / "data.npz"), "--out", str(out), "--batch-size", "8",
                                      "--formats", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    audit = json.loads((out / "audit.json").read_text())
    pool = next(m for m in audit["modules"] if m["name"] == "pool")
    assert [c["name"] for c in pool["per_call"]] == ["pool@1", "pool@2"]
    sections = {s["id"]: s for s in audit["sections"]}
    assert [i for i, s in sections.items() if s["error"] is not None] == []
    assert {"pool@1", "pool@2"} <= set(sections["ablation"]["module_metrics"])


def test_a_release_diff_compares_the_calls_of_the_reused_pool() -> None:
    from auditor.policy.diff import diff_reports

    x, y = _images(24)
    old = auditor.audit(build_tutorial_net(), (x, y), analyses=["inventory"], batch_size=8)
    model = build_tutorial_net()
    with torch.no_grad():
        model.conv2.bias.add_(1.0)  # moves what the pool's second call sees, not its first
    new = auditor.audit(model, (x, y), analyses=["inventory"], batch_size=8)
    moves = diff_reports(old, new).module_moves
    moved = {m.module for m in moves} | {a for m in moves for a in m.also}
    assert "pool@2" in moved and "pool@1" not in moved
