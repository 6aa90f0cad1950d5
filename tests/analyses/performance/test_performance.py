"""Performance: an untrained model must fail near chance; a trained one passes; calibration is measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import auditor
from auditor.analyses.performance import expected_calibration_error
from auditor.config import DataSpec


def _blobs(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    return centres[y] + torch.randn(n, 2, generator=g) * 0.6, y


def _trained(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def test_untrained_model_fails_near_chance() -> None:
    torch.manual_seed(3)
    x, y = _blobs()
    untrained = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        untrained[2].weight.mul_(0.01)  # nearly constant logits: one class predicted everywhere
    report = auditor.audit(untrained, (x, y))
    near = report.findings_by_id("performance.near_chance")
    assert len(near) == 1 and near[0].severity == auditor.Severity.FAIL
    assert report.verdict.status == "fail"


def test_trained_model_passes_with_accuracy_and_per_class_table() -> None:
    x, y = _blobs()
    report = auditor.audit(_trained(x, y), (x, y), max_samples=300)
    section = report.section("performance")
    assert section.metrics["accuracy"] > 0.95
    assert section.metrics["majority_rate"] == pytest.approx(1 / 3)
    assert report.findings_by_id("performance.near_chance") == []
    table = section.tables[0]
    assert [row[0] for row in table.rows] == ["0", "1", "2"] and all(row[1] == 100 for row in table.rows)
    assert report.metrics["performance.accuracy"] == section.metrics["accuracy"]
    assert len(section.figures) == 2


def test_overconfident_model_is_flagged_miscalibrated() -> None:
    x, y = _blobs()
    model = _trained(x, y)
    noisy_y = y.clone()
    noisy_y[::4] = (noisy_y[::4] + 1) % 3  # a quarter of the labels are wrong: accuracy ~75%
    overconfident = nn.Sequential(model, Scale(50.0))
    report = auditor.audit(overconfident, (x, noisy_y))
    assert report.section("performance").metrics["ece"] > 0.15
    assert [f.id for f in report.findings if f.id == "performance.miscalibrated"] == ["performance.miscalibrated"]


class Scale(nn.Module):
    """Multiplies logits: the same predictions, sharper probabilities."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_single_logit_binary_model_is_read_as_sigmoid() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[5.0, 0.0, 0.0]]))
        model.bias.zero_()
    report = auditor.audit(model, (x, y))
    assert report.section("performance").metrics["accuracy"] == 1.0
    assert report.metadata.n_classes == 2


def test_ece_of_perfect_calibration_is_zero_and_of_full_confidence_errors_is_one() -> None:
    conf = np.full(10, 0.7)
    correct = np.array([1] * 7 + [0] * 3, dtype=bool)
    assert expected_calibration_error(conf, correct, 10)[0] == pytest.approx(0.0)
    assert expected_calibration_error(np.ones(4), np.zeros(4, dtype=bool), 10)[0] == pytest.approx(1.0)


def test_a_model_near_chance_is_one_failing_finding_not_one_warning_per_class() -> None:
    x, y = _blobs()
    constant = nn.Linear(2, 3)
    with torch.no_grad():
        constant.weight.zero_()
        constant.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))  # always class 2
    report = auditor.audit(constant, (x, y))
    ids = [f.id for f in report.findings if f.id.startswith("performance.")]
    assert ids.count("performance.near_chance") == 1 and "performance.weak_class" not in ids


def test_a_class_the_model_never_predicts_is_a_weak_class() -> None:
    x, y = _blobs()
    model = _trained(x, y)
    with torch.no_grad():
        model[2].bias[2] -= 100.0  # class 2 can no longer win
    report = auditor.audit(model, (x, y))
    weak = report.findings_by_id("performance.weak_class")
    assert [f.evidence["class"] for f in weak] == ["2"] and weak[0].evidence["recall"] == 0.0
    assert report.findings_by_id("performance.near_chance") == []


def test_a_bare_encoder_says_what_its_labels_were_used_for(tiny_encoder_dir: Path, text_csv: Path,
                                                           run_cli: Any, tmp_path: Path) -> None:
    result = run_cli("run", "--model", tiny_encoder_dir, "--data", text_csv, "--out", tmp_path, "--formats",
                     "json,html", "--quiet")

    assert result.exit_code == 0, result.stderr
    audit = json.loads((tmp_path / "audit.json").read_text())
    performance = next(s for s in audit["sections"] if s["id"] == "performance")
    assert performance["summary"].startswith("Not measured") and "--head" in performance["summary"]
    assert "task of the linear probes" in performance["summary"]  # what the labels are for: the probes
    assert [f for f in audit["findings"] if f["id"] == "performance.labels_unused"] == []

    skipped = tmp_path / "skipped"
    result = run_cli("run", "--model", tiny_encoder_dir, "--data", text_csv, "--out", skipped, "--formats",
                     "json,html", "--quiet", "--skip", "probes")
    assert result.exit_code == 0, result.stderr
    audit = json.loads((skipped / "audit.json").read_text())
    unused = [f for f in audit["findings"] if f["id"] == "performance.labels_unused"]
    assert len(unused) == 1 and unused[0]["severity"] == "info"
    assert unused[0]["evidence"] == {"labels": 12, "classes": 2}
    assert "were read but not used" in (skipped / "report.html").read_text()


def test_an_unlabelled_bare_encoder_is_told_how_to_get_performance(tiny_encoder_dir: Path, text_csv: Path) -> None:
    unlabelled = auditor.AuditConfig(data=DataSpec(label_column=None))
    report = auditor.audit(tiny_encoder_dir, text_csv, config=unlabelled)

    assert "performance" not in [s.id for s in report.sections]
    assert "--head" in report.not_run["performance"]  # listed with its reason in the report
    assert report.findings_by_id("performance.labels_unused") == []


class NanForSomeInputs(nn.Module):
    """A trained-looking classifier whose logits are NaN wherever the first input feature exceeds 2.5."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.where(x[:, :1] > 2.5, torch.full_like(logits, float("nan")), logits)


def test_nan_scores_on_finite_inputs_never_pass_as_ok() -> None:
    from auditor.report.html import render_html

    x, y = _blobs()
    report = auditor.audit(NanForSomeInputs(_trained(x, y)), (x, y), max_samples=300)

    section = report.section("performance")
    bad = int((x[:, 0] > 2.5).sum())
    assert 0 < bad < 300 and section.metrics["non_finite_predictions"] == bad
    found = report.findings_by_id("performance.non_finite_scores")
    assert len(found) == 1 and found[0].severity == auditor.Severity.FAIL
    assert found[0].evidence["first_sample"] == int(torch.nonzero(x[:, 0] > 2.5)[0])
    assert np.isnan(section.metrics["ece"]) and report.verdict.status == "fail"
    assert f"calibration undefined ({bad} samples with NaN/Inf scores)" in section.summary
    assert "error nan" not in section.summary
    assert len(section.figures) == 2  # the reliability diagram still shows the finite samples
    page = render_html(report)
    block = page[page.index('<section id="section-performance"'):]
    assert 'badge badge-fail">' in block[:block.index("</header>")]
    assert 'class="metric metric-nan" title="ece: not a number"' in block


def test_the_reliability_legend_dot_is_small_whatever_the_bin_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.analyses.performance as performance

    drawn: list[Any] = []
    real = performance.to_figure
    monkeypatch.setattr(performance, "to_figure", lambda fig, **kw: drawn.append(fig) or real(fig, **kw))
    performance._reliability_figure([(0.35, 0.3, 5), (0.95, 0.97, 500)], 0.02)

    legend = drawn[0].axes[0].get_legend()
    sizes = [size for handle in legend.legend_handles if hasattr(handle, "get_sizes") for size in handle.get_sizes()]
    assert sizes and max(sizes) <= 40
