"""The plan: analyses chosen first, their needs merged into one capture, the cost known before any pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

import auditor
from auditor.analyses import ALL_ANALYSES, Analysis, AuditContext, PlanContext
from auditor.config import AuditConfig
from auditor.walk.needs import Needs
from auditor.engine.plan import make_plan
from auditor.pipeline import _in_memory_data, _wrap_module
from auditor.walk.blocks import find_blocks
from auditor.walk.tree import ModuleTree
from auditor.schema.report import Cost, Section
from auditor.subject import build_subject


class NeedsNothing(Analysis):
    id: ClassVar[str] = "nothing"
    title: ClassVar[str] = "Needs nothing"

    def run(self, ctx: AuditContext) -> Section:
        return Section(id=self.id, title=self.title)


class WantsPooled(Analysis):
    id: ClassVar[str] = "pooled_a"
    title: ClassVar[str] = "Pooled A"

    def needs(self, ctx: PlanContext) -> Needs:
        return Needs(pooled=ctx.block_names())

    def run(self, ctx: AuditContext) -> Section:
        return Section(id=self.id, title=self.title, metrics={"modules": float(len(ctx.capture.pooled))})


class AlsoWantsPooled(WantsPooled):
    id: ClassVar[str] = "pooled_b"


class GradParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    layers: int = 1


class WantsGradients(Analysis):
    id: ClassVar[str] = "grads"
    title: ClassVar[str] = "Gradients"
    tasks = frozenset({"classification"})
    params_type = GradParams

    def needs(self, ctx: PlanContext) -> Needs:
        return Needs(gradients=frozenset({"0"}))

    def cost(self, ctx: PlanContext) -> Cost:
        return Cost(forwards=2, note="two patched passes")

    def run(self, ctx: AuditContext) -> Section:
        return Section(id=self.id, title=self.title)


REGISTRY = (NeedsNothing, WantsPooled, AlsoWantsPooled, WantsGradients)


def _plan_ctx(config: AuditConfig | None = None, labels: bool = True) -> PlanContext:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(0)
    data = _in_memory_data((torch.randn(20, 4, generator=g), torch.arange(20) % 3 if labels else None),
                           max_samples=100, seed=0)
    config = config or AuditConfig(batch_size=8)
    tree = ModuleTree(model)
    return PlanContext(subject=build_subject(_wrap_module(model, None), data, config), tree=tree,
                       blocks=find_blocks(tree), config=config)


def test_an_analysis_that_needs_nothing_adds_no_pass() -> None:
    plan = make_plan(_plan_ctx(), (NeedsNothing,))
    assert plan.capture.needs.is_empty and (plan.forwards, plan.backwards) == (1, 0)
    assert plan.n_batches == 3 and plan.steps == 3


def test_two_analyses_that_need_the_same_thing_share_one_capture() -> None:
    ctx = _plan_ctx()
    plan = make_plan(ctx, (WantsPooled, AlsoWantsPooled))
    assert plan.capture.needs == Needs(pooled=ctx.block_names()) and plan.forwards == 1
    assert ctx.block_names() == {"0", "1", "2"}


def test_gradients_add_one_backward_and_own_passes_add_forwards() -> None:
    plan = make_plan(_plan_ctx(), REGISTRY)
    assert plan.capture.needs.backward and plan.backwards == 1
    assert plan.forwards == 1 + 2 and plan.steps == 3 * 3
    text = "\n".join(plan.describe())
    assert "grads" in text and "two patched passes" in text and "total: 3 forward passes and 1 backward pass" in text


def test_selection_skip_and_applicability_are_reported_with_reasons() -> None:
    config = AuditConfig.model_validate({"batch_size": 8, "analyses": {"skip": ["pooled_b"]}})
    plan = make_plan(_plan_ctx(config, labels=True), REGISTRY)
    assert [p.analysis.id for p in plan.analyses] == ["nothing", "pooled_a", "grads"]
    assert plan.not_run == {"pooled_b": "skipped by the configuration"}
    only = make_plan(_plan_ctx(AuditConfig.model_validate({"analyses": {"only": ["grads"]}})), REGISTRY)
    assert [p.analysis.id for p in only.analyses] == ["grads"] and set(only.not_run) == {"nothing", "pooled_a",
                                                                                           "pooled_b"}
    with pytest.raises(auditor.ConfigError, match="unknown analyses \\['nope'\\]"):
        make_plan(_plan_ctx(AuditConfig.model_validate({"analyses": {"only": ["nope"]}})), REGISTRY)


def test_each_analysis_reads_its_own_table_and_a_wrong_key_names_itself() -> None:
    config = AuditConfig.model_validate({"analyses": {"grads": {"layers": 3}}})
    plan = make_plan(_plan_ctx(config), REGISTRY)
    grads = next(p.analysis for p in plan.analyses if p.analysis.id == "grads")
    assert grads.params == GradParams(layers=3)
    bad = AuditConfig.model_validate({"analyses": {"grads": {"layerz": 3}}})
    with pytest.raises(auditor.ConfigError, match=r"invalid \[analyses.grads\]: layerz: Extra inputs are not permitted"):
        make_plan(_plan_ctx(bad), REGISTRY)


def test_the_shipped_config_is_checked_when_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.toml"
    path.write_text("[analyses.inventory]\ndead_unit_warn_fraction = 2\n")
    with pytest.raises(auditor.ConfigError, match=r"invalid \[analyses.inventory\]: dead_unit_warn_fraction: Input should be less than or equal to 1"):
        auditor.load_config(path)
    path.write_text("[analyses.invetnory]\n")
    with pytest.raises(auditor.ConfigError, match="unknown analysis 'invetnory'"):
        auditor.load_config(path)
    path.write_text("[analyses]\nskip = ['performance']\n[analyses.inventory]\ndead_unit_min_units = 8\n")
    config = auditor.load_config(path)
    assert config.analyses.skip == ("performance",) and config.analyses.table("inventory") == {"dead_unit_min_units": 8}


def test_without_labels_performance_does_not_run_and_the_report_says_why() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    report = auditor.audit(model, (torch.randn(10, 4), None))
    # everything else runs (gradients and attributions explain the prediction instead of the label), but
    # the probes: tabular data without labels has nothing to probe for
    lm_only = {a.id for a in ALL_ANALYSES if a.tasks == frozenset({"causal_lm"})}  # not listed for a classifier
    assert [s.id for s in report.sections] == [a.id for a in ALL_ANALYSES
                                               if a.id not in ("performance", "probes", "judge", *lm_only)]
    assert report.not_run == {"performance": "the audit data has no labels",
                              "probes": "no labels to probe for, and no built-in probe set for tabular data "
                                        "([analyses.probes] data adds one)"}
    from auditor.report.card import render_card
    from auditor.report.html import render_html

    # the reader sees the analyses named as sections are, not by their ids
    titles = {a.id: a.title for a in ALL_ANALYSES}
    assert report.not_run_titles == {"performance": titles["performance"], "probes": titles["probes"]}
    html = render_html(report)
    assert "the audit data has no labels" in html
    assert f">{titles['probes']}</span>" in html and ">probes</span>" not in html
    assert f"{titles['performance']} did not run (the audit data has no labels)" in render_card(report)


def test_every_shipped_analysis_declares_its_cost_and_needs() -> None:
    ctx = _plan_ctx()
    for analysis_type in ALL_ANALYSES:
        analysis = analysis_type()
        assert analysis.cost_note and isinstance(analysis.needs(ctx), Needs)


def _run_cli_plan(run_cli: Any, tiny_cnn_npz: Path, out: Path, *extra: str) -> Any:
    return run_cli("run", "--model", "tests.models:build_tiny_cnn", "--data", tiny_cnn_npz, "--out", out,
                   "--plan", *extra)


def test_plan_prints_the_plan_runs_nothing_and_writes_nothing(run_cli: Any, tiny_cnn_npz: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import auditor.engine.capture as capture

    def no_capture(*args: object, **kwargs: object) -> None:
        raise AssertionError("--plan must not run the capture")

    monkeypatch.setattr(capture, "run_capture", no_capture)
    out = tmp_path / "out"
    result = _run_cli_plan(run_cli, tiny_cnn_npz, out, "--analyses", "inventory")
    assert result.exit_code == 0, result.stderr
    assert "24 samples in 1 batch of 32" in result.stdout
    assert "inventory" in result.stdout and "performance" in result.stdout and "skipped" in result.stdout
    assert "total: 1 forward pass and 0 backward passes" in result.stdout and "budget: ~" in result.stdout
    assert not out.exists()


def test_analyses_command_lists_every_analysis(run_cli: Any) -> None:
    result = run_cli("analyses")
    assert result.exit_code == 0, result.stderr
    for analysis in ALL_ANALYSES:
        assert analysis.id in result.stdout
    assert "dead_unit_warn_fraction" in result.stdout


def test_encoded_batches_are_made_once_and_clean_metrics_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.subject.adapters import ModelAdapter

    calls = []
    original = ModelAdapter.encode

    def counting(self: ModelAdapter, start: int, stop: int) -> dict[str, torch.Tensor]:
        calls.append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(ModelAdapter, "encode", counting)
    from tests.contexts import make_context

    model = nn.Sequential(nn.Linear(4, 3))
    ctx = make_context(model, torch.randn(20, 4), torch.arange(20) % 3, batch_size=8)
    batches = [c for c in calls if c[1] - c[0] > 2]  # the 2-sample probe forward is not a batch
    assert batches == [(0, 8), (8, 16), (16, 20)]
    ctx.executor.scores([])
    list(ctx.subject.batches(8))
    assert [c for c in calls if c[1] - c[0] > 2] == batches  # reused, not re-encoded
    assert ctx.clean is ctx.clean and ctx.clean.accuracy is not None
    assert json.dumps(ctx.clean.class_recall)
