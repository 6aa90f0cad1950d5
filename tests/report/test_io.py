"""Saving and loading: atomic writes, readable files, schema versions."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest
import torch
from torch import nn

import auditor
from auditor.report.io import save_report
from auditor.schema.report import AuditReport


@pytest.fixture(scope="module")
def report() -> AuditReport:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return auditor.audit(model, (torch.randn(24, 4, generator=g), torch.arange(24) % 3), seed=5)


def test_a_crash_while_saving_leaves_the_previous_report_in_place(report, monkeypatch, tmp_path) -> None:
    import auditor.report.renderers as renderers

    save_report(report, tmp_path, formats=("json",))
    before = (tmp_path / "audit.json").read_bytes()
    changed = report.model_copy(update={"metrics": {"x": 1.0}})

    def crash(report: object) -> bytes:
        raise MemoryError("renderer died")

    monkeypatch.setitem(renderers.RENDERERS, "html", dataclasses.replace(renderers.RENDERERS["html"], render=crash))
    with pytest.raises(MemoryError):
        save_report(changed, tmp_path, formats=("json", "html"))
    assert (tmp_path / "audit.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.json"]  # no temporaries left


def test_load_report_round_trips_and_rejects_other_schemas(report, tmp_path) -> None:
    save_report(report, tmp_path, formats=("json",))
    again = auditor.load_report(tmp_path)
    assert again == report and again.metadata.seed == 5
    raw = json.loads((tmp_path / "audit.json").read_text())
    raw["schema_version"] = "9.0"
    (tmp_path / "audit.json").write_text(json.dumps(raw))
    with pytest.raises(auditor.AuditorError, match="schema 9.0"):
        auditor.load_report(tmp_path)


def test_an_audit_written_by_schema_1_0_still_loads(report, tmp_path) -> None:
    """1.0 had no module_metrics and no not_run: last release's audit.json must still read, render and diff."""
    raw = json.loads(report.model_dump_json())
    raw["schema_version"] = "1.0"
    raw.pop("not_run")
    for section in raw["sections"]:
        section.pop("module_metrics")
    (tmp_path / "audit.json").write_text(json.dumps(raw))
    old = auditor.load_report(tmp_path)
    assert old.schema_version == "1.0" and old.not_run == {}
    assert old.section("inventory").module_metrics == {} and old.section("inventory").metrics
    from auditor.report.html import render_html

    assert "Module inventory" in render_html(old)


def test_saved_files_follow_the_umask_not_mkstemps_0600(report, tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = save_report(report, tmp_path, formats=("json",))["json"]
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


class AllNaN(nn.Module):
    """A broken model: every logit is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * float("nan")


def test_a_model_with_nan_outputs_still_gets_a_full_report_that_reads_back(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    report = auditor.audit(AllNaN(), (torch.randn(30, 4, generator=g), torch.arange(30) % 3))
    assert report.verdict.status == "fail"
    assert {f.id for f in report.findings} >= {"inventory.non_finite", "performance.near_chance"}
    assert report.metrics["performance.accuracy"] == 0.0  # NaN answers count as wrong, not as class 0
    assert report.metrics["performance.non_finite_predictions"] == 30
    paths = save_report(report, tmp_path)
    assert sorted(paths) == ["html", "json", "pdf"]
    again = auditor.load_report(tmp_path)
    assert again.verdict == report.verdict and [f.id for f in again.findings] == [f.id for f in report.findings]
    assert json.loads((tmp_path / "audit.json").read_text())["metrics"]["performance.nll"] in ("NaN", "Infinity")


def test_an_audit_written_by_schema_1_1_still_loads_checks_and_diffs(report, tmp_path) -> None:
    """1.1 had no data fingerprint, no per-sample predictions and no policy verdict."""
    raw = json.loads(report.model_dump_json())
    raw["schema_version"] = "1.1"
    raw.pop("policy")
    raw["metadata"].pop("data_fingerprint")
    (tmp_path / "audit.json").write_text(json.dumps(raw))
    old = auditor.load_report(tmp_path)
    assert old.metadata.data_fingerprint is None and old.policy is None
    assert auditor.evaluate_policy(old).exit_code in (0, 1)
    assert auditor.diff_reports(old, report).comparison.startswith("unpaired: the baseline audit records no data")
