"""Contracts every analysis must keep (Captum's hook-removal test, scikit-learn's estimator checks)."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch
from torch import nn

import auditor
from auditor.analyses import ALL_ANALYSES, Analysis, AuditContext, PlanContext, run_one
from auditor.engine.analysis import GENERIC_FINDINGS
from auditor.schema.findings import Findings, FindingSpec, Severity
from auditor.walk.needs import Needs
from auditor.report.io import save_report
from auditor.schema.report import Cost, Section
from tests.contexts import make_context, make_generator_context
from tests.models import build_template_classifier, build_template_discriminator, build_toy_generator


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x))


class Explodes(nn.Module):
    """Raises on every forward."""

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("this module explodes")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), Block(), nn.Linear(8, 3))


def _context(model: nn.Module, analysis: Analysis | None = None) -> AuditContext:
    g = torch.Generator().manual_seed(0)
    return make_context(model, torch.randn(24, 4, generator=g), torch.arange(24) % 3, batch_size=8,
                        analyses=[analysis] if analysis is not None else [])


def _for_generators(analysis_type: type[Analysis]) -> bool:
    return analysis_type.tasks == frozenset({"generation"})


def _subject(analysis_type: type[Analysis]) -> tuple[nn.Module, AuditContext]:
    """A classifier for most analyses; a generator with its judges for those that judge generators; the
    hand-built induction GPT-2 for those of language models."""
    if analysis_type.tasks == frozenset({"causal_lm"}):
        return _lm_subject(analysis_type)
    if _for_generators(analysis_type):
        generator = build_toy_generator()
        return generator, make_generator_context(generator, build_template_discriminator(),
                                                 build_template_classifier(), analyses=[analysis_type()])
    model = _model()
    return model, _context(model, analysis_type())


def _break(model: nn.Module) -> None:
    """From now on every forward raises."""
    if hasattr(model, "transformer"):  # the induction GPT-2: its second layer
        model.transformer.h[1] = Explodes()
    elif isinstance(model, nn.Sequential):
        model[1] = Explodes()
    else:
        model.blocks[1] = Explodes()  # the toy generator's second residual block


def _hooks_left(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks]


@pytest.mark.parametrize("analysis_type", ALL_ANALYSES, ids=lambda a: a.id)
def test_a_raising_model_leaves_no_hook_and_loses_no_report(analysis_type: type) -> None:
    model, ctx = _subject(analysis_type)  # the capture ran on the healthy model
    _break(model)
    section = run_one(analysis_type(), ctx)  # must not raise
    assert section.error is not None or analysis_type().cost(ctx).forwards == 0
    assert _hooks_left(model) == []


def _lm_subject(analysis_type: type[Analysis]) -> tuple[nn.Module, AuditContext]:
    from tests.lm_models import induction_gpt2, repeated_texts, word_tokenizer

    lm = induction_gpt2()
    return lm, make_context(lm, {"text": repeated_texts(12, length=6, seed=0)}, None, tokenizer=word_tokenizer(),
                            analyses=[analysis_type()])


@pytest.mark.parametrize("analysis_type", [a for a in ALL_ANALYSES if "causal_lm" in a.tasks
                                           and a.tasks != frozenset({"causal_lm"})], ids=lambda a: a.id)
def test_on_a_language_model_too_a_raising_model_leaves_no_hook(analysis_type: type) -> None:
    """The analyses that run on classifiers and language models alike take another path for a language model
    (attribution and trust on next-token predictions, features on MLP neurons, probes on the residual stream): the
    contract holds on it too."""
    model, ctx = _lm_subject(analysis_type)
    _break(model)
    section = run_one(analysis_type(), ctx)
    assert section.error is not None or analysis_type().cost(ctx).forwards == 0
    assert _hooks_left(model) == []


@pytest.mark.parametrize("analysis_type", ALL_ANALYSES, ids=lambda a: a.id)
def test_each_analysis_declares_itself_and_its_findings_use_its_id(analysis_type: type) -> None:
    analysis = analysis_type()
    assert analysis.id and analysis.title and analysis.modalities and analysis.tasks
    section = run_one(analysis, _subject(analysis_type)[1])
    assert section.id == analysis.id and section.error is None
    assert all(f.id.startswith(f"{analysis.id}.") for f in section.findings)
    assert isinstance(section.cost, Cost)


@pytest.mark.parametrize("analysis_type", ALL_ANALYSES, ids=lambda a: a.id)
def test_every_finding_an_analysis_gives_is_declared_with_its_severity(analysis_type: type) -> None:
    analysis = analysis_type()
    assert analysis.findings.analysis == analysis.id and analysis.findings.specs
    section = run_one(analysis, _subject(analysis_type)[1])
    generic = {spec.condition: spec for spec in GENERIC_FINDINGS}
    for finding in section.findings:
        condition = finding.id.removeprefix(f"{analysis.id}.")
        spec = generic.get(condition) or analysis.findings.spec(condition)  # KeyError: undeclared
        assert finding.severity in (spec.severity, *spec.also), finding.id


def test_an_undeclared_finding_or_severity_cannot_be_built() -> None:
    findings = Findings("inventory", FindingSpec("dead_units", Severity.WARN, "units are dead"))
    assert findings.finding("dead_units", message="m", module="fc").id == "inventory.dead_units"
    assert findings.finding("dead_units", message="m").severity is Severity.WARN
    with pytest.raises(KeyError, match="inventory.dead_unit is not declared"):
        findings.finding("dead_unit", message="m")
    with pytest.raises(ValueError, match="declared warn, not fail"):
        findings.finding("dead_units", message="m", severity=Severity.FAIL)


class Broken(Analysis):
    """An analysis with a bug: it raises a plain exception."""

    id: ClassVar[str] = "broken"
    title: ClassVar[str] = "Broken analysis"

    def run(self, ctx: AuditContext) -> Section:
        raise ZeroDivisionError("division by zero in a bad analysis")


def test_a_failing_analysis_is_an_error_entry_and_the_report_still_saves(monkeypatch, tmp_path) -> None:
    import auditor.pipeline as pipeline

    monkeypatch.setattr(pipeline, "ALL_ANALYSES", (*ALL_ANALYSES, Broken))
    g = torch.Generator().manual_seed(0)
    report = auditor.audit(_model(), (torch.randn(24, 4, generator=g), torch.arange(24) % 3))
    broken = report.section("broken")
    assert broken.error is not None and broken.error.type == "ZeroDivisionError"
    assert report.section("inventory").error is None and report.section("performance").error is None
    assert report.findings_by_id("broken.analysis_failed")[0].severity == auditor.Severity.FAIL
    paths = save_report(report, tmp_path, formats=("json",))
    saved = json.loads(open(paths["json"]).read())
    made_for_others = [a for a in ALL_ANALYSES if _for_generators(a) or a.tasks == frozenset({"causal_lm"})]
    assert [s["id"] for s in saved["sections"]] == [*(a.id for a in ALL_ANALYSES if a not in made_for_others),
                                                    "broken"]
    assert "judge" not in report.not_run  # made for generators: a classifier's report does not list it


class BrokenPlan(Analysis):
    """An analysis whose planning raises (it cannot read the model)."""

    id: ClassVar[str] = "broken_plan"
    title: ClassVar[str] = "Broken plan"

    def needs(self, ctx: PlanContext) -> Needs:
        raise KeyError("no such layer")

    def run(self, ctx: AuditContext) -> Section:
        raise AssertionError("never runs")


def test_an_analysis_that_cannot_plan_is_an_error_entry_too(monkeypatch) -> None:
    import auditor.pipeline as pipeline

    monkeypatch.setattr(pipeline, "ALL_ANALYSES", (BrokenPlan, *ALL_ANALYSES))
    g = torch.Generator().manual_seed(0)
    report = auditor.audit(_model(), (torch.randn(24, 4, generator=g), torch.arange(24) % 3))
    broken = report.section("broken_plan")
    assert broken.error is not None and broken.error.type == "KeyError"
    assert report.findings_by_id("broken_plan.analysis_failed") and report.section("inventory").error is None


class NanMetric(Broken):
    """An analysis whose metric is NaN and which raises no finding about it."""

    id: ClassVar[str] = "nan_maker"
    title: ClassVar[str] = "NaN maker"

    def run(self, ctx: AuditContext) -> Section:
        return Section(id=self.id, title=self.title, metrics={"score": float("nan"), "count": 3.0})


def test_a_nan_metric_never_passes_quietly(monkeypatch) -> None:
    import auditor.pipeline as pipeline
    from auditor.report.html import section_status

    monkeypatch.setattr(pipeline, "ALL_ANALYSES", (*ALL_ANALYSES, NanMetric))
    g = torch.Generator().manual_seed(0)
    report = auditor.audit(_model(), (torch.randn(24, 4, generator=g), torch.arange(24) % 3))

    flagged = report.findings_by_id("nan_maker.nan_metric")
    assert len(flagged) == 1 and flagged[0].severity == auditor.Severity.FAIL
    assert flagged[0].evidence == {"metrics": "score"} and report.verdict.status == "fail"
    written_before = report.section("nan_maker").model_copy(update={"findings": []})  # an older audit.json
    assert section_status(written_before).level == "fail"


def test_same_seed_gives_the_same_audit() -> None:
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(200, 4, generator=g), torch.arange(200) % 3)
    a = auditor.audit(_model(), data, max_samples=50, seed=1)
    b = auditor.audit(_model(), data, max_samples=50, seed=1)
    assert a.metrics == b.metrics and [r.mean for r in a.modules] == [r.mean for r in b.modules]
