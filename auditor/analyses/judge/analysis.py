"""Judge: what each module of a generator contributes, scored by its discriminator and a classifier.

A generator has no label to lose when a module is removed, so the question goes to judges. Each block of
the generator (and each leaf with parameters; residual blocks by their branches, as in ablation) has its
output replaced by its per-unit mean over the noise batch (or by zeros), and the ablated generator is fed
the same fixed noise as the intact one. The discriminator says how real the samples still look (its mean
realness, a probability); a classifier trained on the real data says how sure it is of a class (mean top
probability), which classes the samples now fall into (the class histogram: a class whose share
collapses has vanished), and how varied they are (mean pairwise distance of its penultimate features).
Every number has an interval over noise batches.

Findings: `judge.critical_module` (realness or diversity collapses), `judge.class_specific` (one class's samples
vanish), `judge.redundant` (no judge moves: every interval lies within ±margin).

Speed: the ablated passes run on cached prefixes (`auditor.engine.prefix`), as ablation's do; the judges
read each pass's samples once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel

from auditor.kit.removal import Selection, Target, module_targets, select_modules, unit_targets
from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.analyses.judge.metrics import JudgeRow, Reference, judge_row, noise_batches
from auditor.analyses.judge.report import figures, tables
from auditor.walk.needs import Needs
from auditor.engine.passes import PatchedPass
from auditor.engine.trace import Traced
from auditor.errors import ConfigError
from auditor.schema.report import Cost, Section
from auditor.subject import Modality, Task
from auditor.subject.judges import Verdicts
from auditor.walk.patch import Patch


from auditor.analyses.judge.params import JudgeParams
from auditor.analyses.judge.findings import findings_of, metrics_of, summary_of
from auditor.analyses.judge.findings import DEFAULT_RULES, FINDINGS
from auditor.schema.findings import DefaultRule, Findings


class Judge(Analysis):
    """Ablates each generator module and asks the discriminator and a classifier what was lost."""

    id: ClassVar[str] = "judge"
    title: ClassVar[str] = "Generator judge"
    findings: ClassVar[Findings] = FINDINGS
    default_rules: ClassVar[tuple[DefaultRule, ...]] = DEFAULT_RULES
    modalities: ClassVar[frozenset[Modality]] = frozenset({"noise"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"generation"})
    params_type: ClassVar[type[BaseModel]] = JudgeParams
    cost_note: ClassVar[str] = ("one patched pass of the generator per ablated module, plus one recording pass; "
                                "the judges read every pass's samples once")

    def __init__(self, params: JudgeParams | None = None) -> None:
        self.params: JudgeParams = params or JudgeParams()

    def not_applicable(self, ctx: PlanContext) -> str | None:
        if ctx.subject.task != "generation" or ctx.subject.judges is None:
            return "applies to generators only (give [generator] with its discriminator)"
        return None

    def _unit_layers(self, ctx: PlanContext) -> list[str]:
        unknown = sorted(set(self.params.unit_layers) - set(ctx.tree.names))
        if unknown:
            raise ConfigError(f"[analyses.judge] unit_layers names modules the generator does not have: {unknown[:5]}")
        return list(self.params.unit_layers)

    def needs(self, ctx: PlanContext) -> Needs:
        if self.params.mode != "mean":
            return Needs()
        modules = select_modules(ctx, ctx.traced, self.params.modules)
        branches = [b.module for n in modules for j in ctx.joins if j.block == n for b in j.branches]
        return Needs(unit_means=frozenset([*modules, *branches, *self._unit_layers(ctx)]))

    def select(self, ctx: PlanContext, traced: dict[str, Traced], means: dict[str, torch.Tensor]) -> Selection:
        p = self.params
        selection = Selection()
        mode: Literal["mean", "zero"] = "zero" if p.mode == "resample" else p.mode
        module_targets(ctx, traced, means, modules=p.modules, mode=mode, selection=selection)
        unit_targets(traced, means, self._unit_layers(ctx), mode=mode, max_units=p.max_units, selection=selection)
        if p.mode == "resample":
            selection.targets = [_resampled(t, traced) for t in selection.targets]
        return selection

    def cost(self, ctx: PlanContext) -> Cost:
        selection = self.select(ctx, ctx.traced, {})
        passes = len({t.key for t in selection.targets})
        recording = 1 if passes and self.params.cache_mib else 0
        return Cost(forwards=float(passes + recording),
                    note=f"{passes} patched passes of the generator and {recording} recording pass; the judges "
                         f"read {passes + 1} sets of samples")

    def run(self, ctx: AuditContext) -> Section:
        p = self.params
        subject = ctx.subject
        judges = subject.judges
        assert judges is not None and subject.adapter.sample_shape is not None
        shape = subject.adapter.sample_shape
        selection = self.select(ctx, ctx.traced, ctx.capture.unit_means)
        passes: list[PatchedPass] = []
        index: dict[tuple[object, ...], int] = {}
        for target in selection.targets:
            if target.key not in index:
                index[target.key] = len(passes)
                passes.append(PatchedPass(patches=target.patches, label=f"ablating {target.name}"))
        scores, _, _ = ctx.patched_scores(passes, cache_bytes=p.cache_mib << 20)

        def judge(samples: torch.Tensor) -> Verdicts:
            return judges.score(samples, shape, subject.conditions, batch_size=ctx.config.batch_size,
                                device=subject.device)

        intact = ctx.capture.scores
        ref = Reference(samples=intact, verdicts=judge(intact), groups=noise_batches(len(intact), p.noise_batches),
                        confidence=p.confidence, conditions=subject.conditions)
        rows: list[JudgeRow] = []
        samples_of: dict[str, torch.Tensor] = {}
        judged: dict[int, Verdicts] = {}
        for target in selection.targets:
            i = index[target.key]
            if i not in judged:
                judged[i] = judge(scores[i])
            rows.append(judge_row(ref, target, scores[i], judged[i], min_class_share=p.min_class_share))
            samples_of[target.name] = scores[i]
        findings, counts = findings_of(ref, rows, subject.class_names, p)
        module_metrics: dict[str, dict[str, float]] = {}
        for row in rows:
            module_metrics.setdefault(row.target.name, {}).update(row.module_metrics())
        metrics = metrics_of(ref, rows, counts)
        section_figures = figures(ref, rows, samples_of, shape, subject.class_names, p)
        return Section(id=self.id, title=self.title, summary=summary_of(ref, rows, counts, ref.verdicts.features_from, p,
                                                                     n_groups=len(ref.groups)),
                       metrics=metrics, tables=tables(ref, rows, subject.class_names, p), figures=section_figures,
                       findings=findings, module_metrics=module_metrics,
                       details={"mode": p.mode, "skipped": selection.skipped, "noise_batches": len(ref.groups),
                                "features": ref.verdicts.features_from,
                                "branches": {r.target.name: list(r.target.branches) for r in rows if r.target.branches}})


def _roll(unit_dim: int | None = None, unit: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """out -> each sample gets the output of the sample before it in the batch (the first, the last's); with a
    unit, only that unit's slice moves."""
    def resample(out: torch.Tensor) -> torch.Tensor:
        if unit is None or unit_dim is None:
            return out.roll(1, dims=0)
        new = out.clone()
        new.select(unit_dim, unit).copy_(out.select(unit_dim, unit).roll(1, dims=0))
        return new
    return resample


def _resampled(target: Target, traced: dict[str, Traced]) -> Target:
    """The target with its zeroing patches turned into resampling ones."""
    if target.kind == "unit":
        patches = {n: Patch(output=_roll(traced[n].unit_dim, target.index)) for n in target.patches}
    else:
        patches = {n: Patch(output=_roll()) for n in target.patches}
    return replace(target, patches=patches, key=(*target.key, "resample"), replaced="another sample's output")


__all__ = ["Judge"]
