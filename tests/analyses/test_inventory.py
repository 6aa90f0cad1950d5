"""The inventory's findings: where NaN starts, dead units, reuse — on models built so the answer is known."""

from __future__ import annotations

import torch
from torch import nn

import auditor
from auditor.config import AuditConfig


class NanMidway(nn.Module):
    """`bad` takes the log of a negative number; everything after it inherits NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.bad = LogOfNegative()
        self.after = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.bad(self.first(x)))


class LogOfNegative(nn.Module):
    """log(-|x| - 1) is NaN everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(-x.abs() - 1.0)


class MostlyDead(nn.Module):
    """A hidden layer whose first 6 of 8 ReLU units can never fire."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            self.hidden.bias[:6] = -1e3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.hidden(x)))


def _data(n: int = 40, classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 4, generator=g), torch.arange(n) % classes


def test_non_finite_is_reported_where_it_starts() -> None:
    report = auditor.audit(NanMidway(), _data(classes=3), batch_size=16)
    found = report.findings_by_id("inventory.non_finite")
    assert len(found) == 1
    assert found[0].severity == auditor.Severity.FAIL and found[0].module == "bad"
    assert found[0].evidence["nan"] == 40 * 4
    assert report.verdict.status == "fail"
    rows = {r.name: r for r in report.modules}
    assert rows["first"].nan_count == 0 and rows["after"].nan_count > 0


def test_dead_units_warn_above_the_configured_fraction() -> None:
    report = auditor.audit(MostlyDead(), _data(), batch_size=16)
    dead = report.findings_by_id("inventory.dead_units")
    assert [f.module for f in dead] == ["act"]
    assert dead[0].evidence["dead_units"] == 6 and dead[0].evidence["units"] == 8
    lenient = AuditConfig.model_validate({"analyses": {"inventory": {"dead_unit_warn_fraction": 0.8}}})
    assert auditor.audit(MostlyDead(), _data(), config=lenient).findings_by_id("inventory.dead_units") == []


def test_reuse_is_an_info_finding_and_module_count_matches_named_modules() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.shared(self.shared(x)))

    model = Twice()
    report = auditor.audit(model, _data())
    reused = report.findings_by_id("inventory.reused_module")
    assert [(f.module, f.severity.value) for f in reused] == [("shared", "info")]
    assert len(report.modules) == len(list(model.named_modules()))
    assert report.section("inventory").metrics["reused_modules"] == 1.0


def test_healthy_model_has_no_inventory_warnings() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    report = auditor.audit(model, _data())
    assert [f.id for f in report.section("inventory").findings if f.severity.value != "info"] == []
    assert report.section("inventory").figures, "the activation profile figure is missing"
