"""The inventory's findings: where NaN starts, dead units, reuse — on models built so the answer is known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import auditor
from auditor.config import AuditConfig
from tests.models import LambdaLayer, build_twice_used


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
            self.hidden.weight[6:] = 1.0  # the last two fire on every input in [0, 1): alive by construction
            self.hidden.bias[6:] = 0.1

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
    below = auditor.audit(MostlyDead(), _data(), config=lenient)
    assert below.findings_by_id("inventory.dead_units") == []
    # Under the warning threshold the units are still dead: the count agrees with the module table's row.
    metrics = below.section("inventory").metrics
    assert [r.name for r in below.modules if r.dead_units] == ["act"]
    assert metrics["modules_with_dead_units"] == 1 and metrics["modules_over_dead_threshold"] == 0


class PadPoolRelu(nn.Module):
    """Zero-pads 4 channels onto 4 (option-A style), max-pools, applies a ReLU module, then a head.

    The 4 padded channels are zero on every sample at `pad`, `pool` and `act`, and none of them is dead:
    no weight and no activation made them zero.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pad = LambdaLayer(lambda x: nn.functional.pad(x, (0, 0, 0, 0, 2, 2)))
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()
        self.head = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.pool(self.pad(self.conv(x)))).flatten(1))


class PrunedThenRelu(nn.Module):
    """A hidden layer whose last 5 of 8 units have all-zero weights and bias, then a ReLU module."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            self.hidden.weight[3:] = 0.0
            self.hidden.bias[3:] = 0.0
            self.hidden.bias[:3] = 5.0  # the other units always fire

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.hidden(x)))


class DeadThenPooled(nn.Module):
    """conv -> in-place ReLU whose first 3 of 4 channels never fire -> max-pool -> flatten -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(4 * 4 * 4, 3)
        with torch.no_grad():
            self.conv.bias[:3] = -1e3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.pool(self.relu(self.conv(x)))))


def _images(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 3


def test_option_a_shortcut_zeros_are_structural_not_dead(cifar_npz: Path) -> None:
    report = auditor.audit("tests.models:build_cifar_resnet", cifar_npz, device="cpu")

    assert report.findings_by_id("inventory.dead_units") == []
    rows = {r.name: r for r in report.modules}
    for name, units in (("layer2.0.shortcut", 32), ("layer3.0.shortcut", 64)):
        assert (rows[name].zero_units, rows[name].dead_units, rows[name].units) == (units // 2, 0, units)
    assert report.section("inventory").metrics["modules_with_dead_units"] == 0


def test_zeros_padded_then_pooled_then_activated_are_not_dead() -> None:
    report = auditor.audit(PadPoolRelu(), _images())

    rows = {r.name: r for r in report.modules}
    assert [(rows[n].zero_units, rows[n].dead_units) for n in ("pad", "pool", "act")] == [(4, 0)] * 3
    assert report.findings_by_id("inventory.dead_units") == []


def test_units_with_all_zero_weights_are_pruned_not_dead() -> None:
    report = auditor.audit(PrunedThenRelu(), _data())

    pruned = report.findings_by_id("inventory.pruned_units")
    assert [(f.module, f.severity.value, f.evidence["pruned_units"]) for f in pruned] == [("hidden", "info", 5)]
    assert report.findings_by_id("inventory.dead_units") == []  # not at hidden, and not at the ReLU after it
    rows = {r.name: r for r in report.modules}
    assert (rows["act"].zero_units, rows["act"].dead_units) == (5, 0)


def test_dead_units_are_reported_once_where_they_die() -> None:
    report = auditor.audit(DeadThenPooled(), _images())

    dead = report.findings_by_id("inventory.dead_units")
    assert [(f.module, f.evidence["dead_units"]) for f in dead] == [("relu", 3)]
    assert "also_seen_as" not in dead[0].evidence
    rows = {r.name: r for r in report.modules}
    assert (rows["pool"].zero_units, rows["pool"].dead_units) == (3, 0)


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


def test_leaf_time_by_type_is_in_percent() -> None:
    report = auditor.audit(DeadThenPooled(), _images())

    table = report.section("inventory").tables[0]
    assert table.columns[-1] == "leaf time %"
    shares = [row[-1] for row in table.rows]
    assert all(isinstance(s, float) and 0.0 <= s <= 100.0 for s in shares)
    assert 1.0 < sum(shares) <= 100.0 + 1e-6  # percent, not fractions of 1


def test_a_module_called_twice_is_drawn_per_call_in_the_activation_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.analyses.inventory as inventory

    drawn: list[Any] = []
    real = inventory.to_figure
    monkeypatch.setattr(inventory, "to_figure", lambda fig, **kw: drawn.append(fig) or real(fig, **kw))
    report = auditor.audit(build_twice_used(), _data(classes=3))

    profile = report.section("inventory").figures[0]
    assert "called more than once per forward" in profile.caption and "shared (×2)" in profile.caption
    ticks = [label.get_text() for label in drawn[0].axes[0].get_xticklabels()]
    assert ticks == ["shared@1", "shared@2", "head"]  # each call drawn where it runs, with its own statistics
