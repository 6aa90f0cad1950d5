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

import math
from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from auditor.kit.removal import Granularity, Selection, Target, module_targets, select_modules, unit_targets
from auditor.engine.analysis import Analysis, AuditContext, PlanContext
from auditor.analyses.judge_metrics import Estimate, JudgeRow, Reference, judge_row, noise_batches
from auditor.analyses.judge_report import class_name, describe, figures, tables
from auditor.walk.needs import Needs
from auditor.engine.passes import PatchedPass
from auditor.engine.prefix import Traced
from auditor.errors import ConfigError
from auditor.schema.findings import Finding, Severity
from auditor.schema.report import Cost, Section
from auditor.subject import Modality, Task
from auditor.subject.judges import Verdicts
from auditor.walk.patch import Patch


class JudgeParams(BaseModel):
    """`[analyses.judge]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modules: Granularity | tuple[str, ...] = "default"
    """"default": every block and every leaf with parameters; "blocks"; "leaves"; "all"; or glob patterns."""
    mode: Literal["mean", "zero", "resample"] = "mean"
    """Replace an output by its per-unit mean over the noise batch, by zeros, or by the output the module gives
    another sample of the same batch (resample ablation: the samples keep their variety, and what is lost is
    what the module carries for this sample; a sequential generator mean-ablated draws one image)."""
    unit_layers: tuple[str, ...] = ()
    """Layers whose units (channels) are also ablated one at a time: which unit draws which class?"""
    max_units: int = Field(64, ge=1)
    noise_batches: int = Field(8, ge=2)
    """The noise is cut into this many batches; every interval is over them (Student's t)."""
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    critical_drop: float = Field(0.5, gt=0.0, le=1.0)
    """`judge.critical_module`: the mean realness falls by at least this share of the intact samples', or the
    samples' diversity by at least this share (a generator that draws one image has lost its job even when
    the discriminator is fooled)."""
    class_drop: float = Field(0.5, gt=0.0, le=1.0)
    """`judge.class_specific`: one class's share of the samples falls by at least this share of its own ..."""
    class_gap: float = Field(0.3, gt=0.0, le=1.0)
    """... and by at least this much more (relatively) than any other class's."""
    min_class_share: float = Field(0.02, ge=0.0, lt=1.0)
    """Classes holding less of the intact samples than this are not judged one by one."""
    redundant_margin: float = Field(0.02, gt=0.0, le=1.0)
    """`judge.redundant`: realness and confidence drops, class shift and relative diversity change all lie
    within ± this (their whole intervals)."""
    cache_mib: int = Field(256, ge=0)
    """Memory for recorded outputs that let a pass skip what precedes the ablated module (0: none)."""
    grid_rows: int = Field(12, ge=2)
    """Rows of the sample grid: the intact generator and the ablations that move realness most."""
    grid_columns: int = Field(10, ge=1)
    """Samples per row (a conditional generator: one per class, in order)."""
    top: int = Field(30, ge=1)
    """Modules in the bar chart."""
    max_findings: int = Field(8, ge=1)


class Judge(Analysis):
    """Ablates each generator module and asks the discriminator and a classifier what was lost."""

    id: ClassVar[str] = "judge"
    title: ClassVar[str] = "Generator judge"
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
        findings, counts = _findings(ref, rows, subject.class_names, p)
        module_metrics: dict[str, dict[str, float]] = {}
        for row in rows:
            module_metrics.setdefault(row.target.name, {}).update(row.module_metrics())
        metrics = _metrics(ref, rows, counts)
        section_figures = figures(ref, rows, samples_of, shape, subject.class_names, p)
        return Section(id=self.id, title=self.title, summary=_summary(ref, rows, counts, ref.verdicts.features_from, p,
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


def _by(row: JudgeRow) -> str:
    """What replaced the output, after "by": "its mean", "zeros", "another sample's output"."""
    replaced = row.target.replaced
    return f"its {replaced}" if replaced == "mean" else replaced


def _module_rows(rows: list[JudgeRow]) -> list[JudgeRow]:
    return [r for r in rows if r.target.kind in ("block", "module")]


def _findings(ref: Reference, rows: list[JudgeRow], names: list[str], p: JudgeParams
              ) -> tuple[list[Finding], dict[str, int]]:
    findings: list[Finding] = []
    conf = f"{p.confidence:.0%}"
    over = f"{conf} interval over {len(ref.groups)} noise batches"

    def unreal(r: JudgeRow) -> bool:
        return r.relative_realness_drop >= p.critical_drop and r.realness_drop.low > 0

    def uniform(r: JudgeRow) -> bool:
        d = r.diversity_change
        return d is not None and d.value <= -p.critical_drop and d.high < 0

    twins = _twins(rows)
    critical = sorted((r for r in _module_rows(rows) if unreal(r) or uniform(r)),
                      key=lambda r: (-r.realness_drop.value if unreal(r) else math.inf, r.diversity_change.value
                                     if r.diversity_change is not None else 0.0))
    one_image = [r for r in _module_rows(rows) if any(r is c for c in critical) and _one_image(r)]  # model order
    path = one_image if len(one_image) > 1 else []
    if path:
        findings.append(_main_path_finding(ref, path, p))
    on_path = {id(r) for r in path}
    for row in [r for r in critical if id(r) not in on_path and id(r) not in twins][:p.max_findings]:
        d, div = row.realness_drop, row.diversity_change
        realness = (f"the discriminator's mean realness falls from {ref.realness:.3f} to {row.realness:.3f} "
                    f"({-row.relative_realness_drop * 100:.0f}%; drop {d.low:.3f}–{d.high:.3f}, {over})")
        if unreal(row):
            what = f"collapses the samples' realness: {realness}"
            if row.confidence_drop is not None:
                what += f"; the classifier's confidence falls by {row.confidence_drop.value * 100:.1f} points"
            if div is not None and math.isfinite(div.value):
                what += f" and the samples' diversity changes by {div.value * 100:+.0f}%"
        else:
            assert div is not None
            span = f"{-div.high * 100:.0f}–{-div.low * 100:.0f}%, " if round(div.high * 100) != round(div.low * 100) \
                else ""
            what = (f"collapses the samples' diversity by {-div.value * 100:.0f}% ({span}{over})"
                    f"{': every sample is the same image' if div.value <= -0.999 else ''}"
                    f", while the discriminator's mean realness moves only from {ref.realness:.3f} to "
                    f"{row.realness:.3f}: it does not see what was lost")
        findings.append(Finding(
            id="judge.critical_module", severity=Severity.INFO, module=row.target.name,
            message=f"Replacing the output of {describe(row)} by {_by(row)} {what}{_same_as(row, rows, twins)}.",
            evidence=_evidence(row)))

    specific = []
    hist = ref.histogram
    for row in rows:
        if hist is None or len(row.class_drops) < 2 or id(row) in twins:
            continue
        relative = sorted(((row.relative_class_drop(c, ref), c) for c in row.class_drops), reverse=True)
        (top, c), (second, _) = relative[0], relative[1]
        if top >= p.class_drop and top - second >= p.class_gap and row.class_drops[c].low > 0:
            specific.append((top - second, row, c, top, second))
    specific.sort(key=lambda item: -item[0])
    for _, row, c, top, second in specific[:p.max_findings]:
        assert hist is not None and row.shares is not None
        name = class_name(c, names)
        findings.append(Finding(
            id="judge.class_specific", severity=Severity.INFO, module=row.target.name,
            message=(f"Ablating {describe(row)} makes class {name!r} vanish from the samples: the classifier assigns "
                     f"it {float(row.shares[c]) * 100:.1f}% of them instead of {float(hist[c]) * 100:.1f}% "
                     f"({-top * 100:.0f}%), while no other class loses more than {max(second, 0.0) * 100:.0f}% of its "
                     f"share: what draws {name!r} passes through it{_same_as(row, rows, twins)}."),
            evidence={**_evidence(row), "class": name, "class_share_intact": float(hist[c]),
                      "class_share_ablated": float(row.shares[c]), "relative_drop": top,
                      "next_relative_drop": second}))

    m = p.redundant_margin
    redundant = [r for r in _module_rows(rows) if _is_redundant(r, m)]
    names_redundant = {r.target.name for r in redundant}
    outermost = [r for r in redundant if not any(r.target.name.startswith(f"{n}.") for n in names_redundant)]
    for row in outermost[:p.max_findings]:
        parts = [f"realness by {_range(row.realness_drop, neg=True)}"]
        if row.confidence_drop is not None:
            parts.append(f"confidence by {_range(row.confidence_drop, neg=True)}")
        if row.class_shift is not None:
            parts.append(f"at most {max(row.class_shift.high, 0.0) * 100:.1f}% of samples change class")
        if row.diversity_change is not None:
            parts.append(f"diversity by {_range(row.diversity_change, pct=True)}")
        findings.append(Finding(
            id="judge.redundant", severity=Severity.INFO, module=row.target.name,
            message=(f"Replacing the output of {describe(row)} by {_by(row)} moves no judge: "
                     f"{'; '.join(parts)} ({over}, all within ±{m:g}). The generator does not need it as trained."),
            evidence=_evidence(row)))
    counts = {"critical_modules": len(critical), "main_path_modules": len(path), "class_specific": len(specific),
              "redundant_modules": len(outermost)}
    return findings, counts


def _one_image(row: JudgeRow) -> bool:
    """Every sample is (nearly) the same image: the diversity fell by 99.9% or more."""
    return row.diversity_change is not None and row.diversity_change.value <= -0.999


def _main_path_finding(ref: Reference, path: list[JudgeRow], p: JudgeParams) -> Finding:
    """One finding for the modules whose mean makes every sample the same image: a sequential generator's
    stages each carry everything the noise says, so each alone says only that it is on the path."""
    names = [r.target.name for r in path]
    chosen = set(names)
    outer = [n for n in names if not any(n.startswith(f"{o}.") for o in chosen)]
    inner = len(names) - len(outer)
    shown = ", ".join(outer[:6]) + (f" and {len(outer) - 6} more" if len(outer) > 6 else "")
    inside = f" (with {inner} of the modules inside {'it' if len(outer) == 1 else 'them'})" if inner else ""
    realness = [r.realness for r in path]
    replaced = sorted({_by(r) for r in path})
    return Finding(
        id="judge.main_path", severity=Severity.INFO, module=None,
        message=(f"The generator draws one image for every noise vector when any of {len(names)} modules on its main "
                 f"path is replaced by {' or '.join(replaced)}: {shown}{inside}. The discriminator then rates the "
                 f"samples {min(realness):.3f}–{max(realness):.3f} real (intact {ref.realness:.3f}): every sample "
                 "passes through them, so this says they are on the path, not what each draws (the table has "
                 "every row)."),
        evidence={"modules": ", ".join(names), "count": len(names), "outermost": ", ".join(outer),
                  "realness_min": min(realness), "realness_max": max(realness), "intact_realness": ref.realness,
                  "critical_drop": p.critical_drop})


def _numbers(row: JudgeRow) -> tuple[float, ...]:
    values = [row.realness, row.sample_change, *(e.value for e in (row.confidence_drop, row.class_shift,
                                                                    row.diversity_change) if e is not None)]
    return tuple(float(f"{v:.6g}") for v in values)  # a norm after its conv: equal but for float rounding


def _twins(rows: list[JudgeRow]) -> dict[int, JudgeRow]:
    """Rows whose ablation gives the same numbers as an earlier row's (a norm right after a conv: replacing
    either by its mean is the same generator), by id, to the row they repeat."""
    first: dict[tuple[float, ...], JudgeRow] = {}
    twins: dict[int, JudgeRow] = {}
    for row in rows:
        if row.target.kind not in ("block", "module"):
            continue
        key = _numbers(row)
        if key in first:
            twins[id(row)] = first[key]
        else:
            first[key] = row
    return twins


def _same_as(row: JudgeRow, rows: list[JudgeRow], twins: dict[int, JudgeRow]) -> str:
    same = [r.target.name for r in rows if twins.get(id(r)) is row]
    return f" (ablating {', '.join(same)} gives the same numbers)" if same else ""


def _is_redundant(row: JudgeRow, m: float) -> bool:
    """An equivalence: every judge's whole interval lies within ±m."""
    checks = [row.realness_drop, row.confidence_drop, row.diversity_change]
    if any(e is not None and not (-m <= e.low and e.high <= m) for e in checks):
        return False
    return row.class_shift is None or row.class_shift.high <= m


def _range(e: Estimate, *, neg: bool = False, pct: bool = False) -> str:
    low, high = (-e.high + 0.0, -e.low + 0.0) if neg else (e.low + 0.0, e.high + 0.0)  # + 0.0: no "-0.000"
    if pct:
        return f"{low * 100:+.1f}% to {high * 100:+.1f}%"
    return f"{low:+.3f} to {high:+.3f}"


def _evidence(row: JudgeRow) -> dict[str, float | str]:
    values: dict[str, float | str] = {"ablated_as": row.target.replaced, "realness_ablated": round(row.realness, 4)}
    for key, value in row.module_metrics().items():
        values[key.removeprefix("judge_")] = round(value, 4) if math.isfinite(value) else str(value)
    values["realness_drop_low"] = round(row.realness_drop.low, 4)
    values["realness_drop_high"] = round(row.realness_drop.high, 4)
    return values


def _metrics(ref: Reference, rows: list[JudgeRow], counts: dict[str, int]) -> dict[str, float]:
    metrics = {"intact_realness": ref.realness, "intact_diversity": ref.diversity, "ablated": float(len(rows)),
               **{k: float(v) for k, v in counts.items()}}
    if ref.verdicts.probabilities is not None:
        metrics["intact_confidence"] = ref.confidence_mean
    if math.isfinite(ref.condition_accuracy):
        metrics["intact_condition_accuracy"] = ref.condition_accuracy
    drops = [r.realness_drop.value for r in _module_rows(rows)]
    if drops:
        metrics["max_realness_drop"] = max(drops)
    return metrics


_REPLACED = {"mean": "its per-unit mean", "zero": "zeros",
             "resample": "the output it gives another sample of the same batch"}


def _summary(ref: Reference, rows: list[JudgeRow], counts: dict[str, int], features_note: str, p: JudgeParams, *,
             n_groups: int) -> str:
    n = len(ref.samples)
    modules = len(_module_rows(rows))
    units = len(rows) - modules
    parts = [f"Each of {modules} generator module{'s' * (modules != 1)}"
             + (f" and {units} unit{'s' * (units != 1)}" if units else "")
             + f" was ablated (its output replaced by {_REPLACED[p.mode]}) and the generator fed the same {n} noise "
               f"vectors; intervals are over {n_groups} noise batches."]
    judged = f"The discriminator rates the intact samples {ref.realness:.3f} real on average"
    if ref.verdicts.probabilities is not None:
        judged += f"; the classifier is {ref.confidence_mean * 100:.1f}% sure of their class on average"
        if math.isfinite(ref.condition_accuracy):
            judged += f" and sees the asked-for class in {ref.condition_accuracy * 100:.1f}% of them"
    parts.append(judged + f". Diversity is measured in {features_note}.")
    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"
    parts.append(f"{count(counts['critical_modules'], 'module collapses', 'modules collapse')} realness or diversity, "
                 f"{count(counts['class_specific'], 'ablation makes', 'ablations make')} one class vanish, "
                 f"{count(counts['redundant_modules'], 'module moves', 'modules move')} no judge.")
    return " ".join(parts)


__all__ = ["Judge", "JudgeParams", "Target"]
