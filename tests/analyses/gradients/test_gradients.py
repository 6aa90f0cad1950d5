"""The gradients analysis on models built so the answer is known, and against Captum's own numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from captum.attr import LayerConductance, LayerGradientXActivation
from torch import nn

import auditor
from auditor.analyses.gradients import Gradients, GradientsParams
from auditor.analyses import run_one
from auditor.analyses.gradients.conductance import SweepSpec, run_sweep
from auditor.progress import SilentProgress
from auditor.walk.joins import SumSite
from tests.contexts import make_context
from tests.models import TinyCNN, build_two_stage_resnet


def _data(n: int = 24, features: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.arange(n) % classes


class IgnoresABranch(nn.Module):
    """Both branches see the input; the head reads `carrier` only (`decoy` is multiplied by zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.carrier, self.decoy, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.carrier(x)) + 0.0 * self.decoy(x))


def _run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **params: object) -> auditor.Section:
    analysis = Gradients(GradientsParams(**params))  # type: ignore[arg-type]
    ctx = make_context(model, x, y, batch_size=8, analyses=[analysis])
    section = run_one(analysis, ctx)
    assert section.error is None, section.error
    return section


def test_a_branch_the_head_ignores_gets_zero_gradient_and_a_finding() -> None:
    torch.manual_seed(0)
    section = _run(IgnoresABranch(), *_data())
    norms = section.module_metric("grad_norm")
    assert norms["decoy"] == 0.0 and norms["carrier"] > 0 and norms["head"] > 0
    silent = [f for f in section.findings if f.id == "gradients.no_influence"]
    assert [f.module for f in silent] == ["decoy"] and silent[0].severity == auditor.Severity.INFO


def test_numbers_are_captums_layer_gradient_x_activation_for_every_module() -> None:
    torch.manual_seed(0)
    model, (x, y) = TinyCNN().eval(), (torch.rand(20, 1, 8, 8), torch.arange(20) % 3)
    section = _run(model, x, y, conductance=False)
    forward = lambda inputs: torch.log_softmax(model(inputs), dim=1)  # noqa: E731  (the task's target)
    for name in ("conv", "pool", "flatten", "fc"):
        per_sample = LayerGradientXActivation(forward, model.get_submodule(name)).attribute(x, target=y)
        per_sample = per_sample.flatten(1).sum(1).detach().double()
        values = section.module_metrics[name]
        tolerance = 1e-4 * values["abs_grad_x_act"] + 1e-7
        assert values["grad_x_act"] == pytest.approx(float(per_sample.mean()), rel=1e-4, abs=tolerance), name
        assert values["abs_grad_x_act"] == pytest.approx(float(per_sample.abs().mean()), rel=1e-4, abs=tolerance)
    assert set(section.module_metrics["fc"]) >= {"grad_norm/0", "grad_x_act/1", "abs_grad_x_act/2"}


def test_the_audit_fills_no_parameter_grad_and_leaves_requires_grad_flags_alone() -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    model.conv.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    report = auditor.audit(model, (torch.rand(16, 1, 8, 8), torch.arange(16) % 3), batch_size=8)
    assert report.section("gradients").error is None
    assert all(p.grad is None for p in model.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks] == []


class TwoBranches(nn.Module):
    """x -> a(x) + b(x) -> join (an Identity whose input is the sum) -> ReLU -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.join = nn.Identity()
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.join(self.a(x) + self.b(x))))


def test_conductance_of_parallel_branches_sums_to_their_join_and_equals_captum() -> None:
    torch.manual_seed(0)
    model = TwoBranches().eval()
    x, y = _data(n=12)
    section = _run(model, x, y, conductance_steps=16, conductance_units=("join",), conductance_rule="captum")
    values = section.module_metrics
    a, b, total = values["a"]["conductance"], values["b.1"]["conductance"], values["b.1"]["sum_conductance"]
    assert a + b == pytest.approx(total, rel=1e-5)
    forward = lambda inputs: torch.log_softmax(model(inputs), dim=1)  # noqa: E731
    for name, ours in (("a", a), ("b.1", b), ("join", values["join"]["conductance"])):
        theirs = LayerConductance(forward, model.get_submodule(name)).attribute(
            x, baselines=torch.zeros_like(x), target=y, n_steps=16)
        expected = float(theirs.detach().flatten(1).sum(1).double().mean())
        assert ours == pytest.approx(expected, rel=1e-4, abs=1e-5 * max(abs(expected), abs(total))), name
    per_unit = theirs.detach().double().mean(dim=0)
    assert [values["join"][f"conductance/{u}"] for u in range(6)] == pytest.approx(per_unit.tolist(), rel=1e-4,
                                                                                      abs=1e-6)
    assert total == pytest.approx(values["join"]["conductance"], rel=1e-5)  # the sum's input is the join's output
    assert {t.id for t in section.tables} == {"gradients.ranked", "gradients.conductance"}


class Residual(nn.Module):
    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.lin, self.residual = nn.Linear(16, 16), residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.sigmoid(self.lin(x))
        return x + out if self.residual else out


class Deep(nn.Module):
    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 16)
        self.blocks = nn.Sequential(*[Residual(residual) for _ in range(12)])
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def test_vanishing_gradients_in_a_deep_sigmoid_stack_and_not_with_skip_connections() -> None:
    torch.manual_seed(0)
    x, y = _data(n=32)
    plain = _run(Deep(residual=False), x, y, conductance=False)
    vanishing = [f for f in plain.findings if f.id == "gradients.vanishing"]
    assert [f.module for f in vanishing] == ["blocks"] and vanishing[0].severity == auditor.Severity.WARN
    assert vanishing[0].evidence["ratio"] < 0.01
    torch.manual_seed(0)
    skip = _run(Deep(residual=True), x, y, conductance=False)
    assert not [f for f in skip.findings if f.id in ("gradients.vanishing", "gradients.exploding")]
    assert any(cut.startswith("blocks of blocks") for cut in skip.details["cuts"])


def test_a_bare_encoder_is_not_applicable_and_the_report_says_why(tiny_encoder_dir: Path, text_csv: Path) -> None:
    report = auditor.audit(str(tiny_encoder_dir), str(text_csv))
    assert "gradients" not in [s.id for s in report.sections]
    assert "bare encoder" in report.not_run["gradients"]


def test_a_transformer_gets_its_residual_joins_heads_and_per_class_numbers(tiny_bert_dir: Path, text_csv: Path) -> None:
    report = auditor.audit(str(tiny_bert_dir), str(text_csv), batch_size=4,
                           config=auditor.AuditConfig.model_validate({"analyses": {"gradients": {
                               "conductance_samples": 6, "conductance_steps": 4}}}))
    section = report.section("gradients")
    assert section.error is None
    joins = section.details["joins"]
    assert len(joins) == 4  # attention and MLP sums of each of the 2 layers
    assert {j["branches"][0].rsplit(".", 2)[-2] for j in joins} == {"output"}
    mlp = section.module_metrics["bert.encoder.layer.1.output.dense"]
    assert {"conductance", "sum_conductance", "stream_conductance"} <= set(mlp)
    assert mlp["conductance"] + mlp["stream_conductance"] == pytest.approx(mlp["sum_conductance"], rel=1e-5)
    heads = section.module_metrics["bert.encoder.layer.0.attention.self"]
    assert {"head_abs_grad_x_act/0", "head_abs_grad_x_act/1"} <= set(heads)
    assert "grad_norm/positive" in section.module_metrics["classifier"]
    assert {f.id for f in section.figures} >= {"gradients.conductance", "gradients.heads", "gradients.profile"}
    assert section.cost.backwards > 0 and section.metrics["conductance_samples"] == 6


def test_with_the_default_trapezoid_rule_a_full_cut_carries_the_whole_change_of_the_target() -> None:
    """Completeness: all of F(x) - F(baseline) flows through the sum, which every path crosses."""
    torch.manual_seed(0)
    model = TwoBranches().eval()
    x, y = _data(n=12)
    ctx = make_context(model, x, y)
    site = ctx.joins[0].site

    def gap(steps: int, rule: str) -> float:
        spec = SweepSpec(points=(site,), samples=tuple(range(12)), n_steps=steps, rule=rule)  # type: ignore[arg-type]
        result = run_sweep(ctx.subject, ctx.tree, spec, labels=y, batch_size=8, progress=SilentProgress())
        assert result.delta is not None
        return float((result.conductance[site] - result.delta).abs().max() / result.delta.abs().max())

    assert gap(20, "trapezoid") < 0.05 and gap(400, "trapezoid") < 2e-3  # converges (first order at ReLU kinks)
    assert gap(20, "captum") > gap(20, "trapezoid")


@pytest.mark.parametrize("variant", ["akamaster", "functional"])
def test_a_sum_behind_a_functional_relu_splits_its_conductance_between_branch_and_shortcut(variant: str) -> None:
    """`relu(bn2(...) + shortcut(x))`: no hook sees the sum, so its conductance is read at the block's output
    (an element-wise activation passes on what flows through it). Where the width doubles, the shortcut
    (option A's zero-padding lambda, or conv1x1 + bn) is read by the sum alone, so its own conductance can be
    measured: it is the stream's share the analysis reports, up to the integration error at the ReLU's kinks."""
    model = build_two_stage_resnet(variant)
    x, y = torch.randn(24, 3, 8, 8, generator=torch.Generator().manual_seed(2)), torch.arange(24) % 4
    analysis = Gradients(GradientsParams(conductance_samples=24, conductance_steps=50))
    ctx = make_context(model, x, y, batch_size=8, analyses=[analysis])
    section = run_one(analysis, ctx)
    assert section.error is None, section.error
    joins = {j["block"]: j for j in section.details["joins"]}
    assert joins["layer2.0"] == {"block": "layer2.0", "sum_at": "output of layer2.0 (= relu(sum))",
                                 "branches": ["layer2.0.bn2"], "stream": "layer2.0.shortcut"}
    assert section.details["cuts"]["sum at layer2.0 (before its relu)"] == ["layer2.0.bn2", "layer2.0.shortcut"]
    rows = {(r[0], r[2]): r for r in next(t for t in section.tables if t.id == "gradients.conductance").rows}
    assert {block for block, _ in rows} == {"layer1.0", "layer1.1", "layer2.0", "layer2.1"}
    branch = section.module_metrics["layer2.0.bn2"]
    total = branch["sum_conductance"]
    assert rows[("layer2.0", "stream")][3] == pytest.approx(branch["stream_conductance"])
    join = next(j for j in ctx.joins if j.block == "layer2.0")
    shortcut = SumSite("layer2.0.shortcut", "output")
    spec = SweepSpec(points=(join.site, *join.branches, shortcut), samples=tuple(range(24)), n_steps=50)
    measured = run_sweep(ctx.subject, ctx.tree, spec, labels=y, batch_size=8, progress=SilentProgress())
    assert float(measured.conductance[join.site].mean()) == pytest.approx(total, rel=1e-4)
    own = float(measured.conductance[shortcut].double().mean())
    assert abs(own - branch["stream_conductance"]) < 0.03 * abs(total)  # measured at 50 steps: within 0.3%
    assert abs(own) > 0.1 * abs(total)  # the shortcut carries a real share: the comparison means something
