"""The plan: which analyses run (and which do not, with the reason), what each needs and costs, and the
passes over the audit data that follow from it. Made before any pass runs, so an audit knows its full
cost when it starts (`auditor run --plan` prints it and stops)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from auditor.walk.needs import Needs
from auditor.errors import AuditorError, ConfigError
from auditor.schema.report import Cost

if TYPE_CHECKING:
    from auditor.engine.analysis import Analysis, PlanContext

log = logging.getLogger("auditor")

BACKWARD_FACTOR = 1.0
"""A backward to the activations costs about one forward more (measured: forward + backward ~1.9x)."""


@dataclass(frozen=True)
class CapturePass:
    """The shared pass: one hooked forward per batch, plus one backward when the needs ask for gradients."""

    needs: Needs

    @property
    def forwards(self) -> int:
        return 1

    @property
    def backwards(self) -> int:
        return 1 if self.needs.backward else 0


@dataclass(frozen=True)
class PlannedAnalysis:
    analysis: Analysis
    needs: Needs
    cost: Cost
    error: Exception | None = None
    """Planning the analysis raised (a bug, or a model it cannot read): it becomes an error section."""


@dataclass(frozen=True)
class Plan:
    """Analyses in report order with their needs and costs, those left out, and the shared capture."""

    analyses: tuple[PlannedAnalysis, ...]
    not_run: dict[str, str]
    """Analysis id -> why it does not run (skipped by config, or not applicable, with the reason)."""
    capture: CapturePass
    n_samples: int
    batch_size: int
    n_batches: int
    seconds_per_batch: float | None = field(default=None)
    """A plain forward of one batch, timed (only when the plan is printed)."""
    threads: str | None = field(default=None)
    """The thread choice the timing ran on, in words (only when the plan is printed)."""
    not_run_titles: dict[str, str] = field(default_factory=dict)
    """Analysis id -> its title, for those that do not run (the report names them as its sections are named)."""

    @property
    def threads_note(self) -> str:
        return f" on {self.threads}" if self.threads else ""

    @property
    def forwards(self) -> float:
        """Passes over the audit data with a forward per batch, the capture included."""
        return self.capture.forwards + sum(p.cost.forwards for p in self.analyses)

    @property
    def backwards(self) -> float:
        return self.capture.backwards + sum(p.cost.backwards for p in self.analyses)

    @property
    def steps(self) -> int:
        """Forward batches in all: what the progress bar counts."""
        return round(self.forwards * self.n_batches)

    @property
    def estimate_seconds(self) -> float | None:
        """The audit's time budget: every pass (the capture's, each analysis's at its cost in full forwards)
        times the measured cost of a plain forward over the data, a backward at `BACKWARD_FACTOR` forwards."""
        if self.seconds_per_batch is None:
            return None
        return sum(stage_budgets(self, self.seconds_per_batch).values())

    def describe(self) -> list[str]:
        """The plan as lines of text (what `auditor run --plan` prints)."""
        if self.n_samples:
            lines = [f"{self.n_samples} samples in {self.n_batches} batch{'es' * (self.n_batches != 1)} of "
                     f"{self.batch_size}", "", "shared capture (one hooked pass): "
                     f"{self.capture.forwards} forward{' + 1 backward' if self.capture.backwards else ''} per batch"]
            lines += [f"  records: {line}" for line in self.capture.needs.describe()]
        else:
            lines = ["no audit data: the model is never called; only the analyses that read its weights run"]
        lines.append("")
        lines.append("analyses:")
        for planned in self.analyses:
            a, cost = planned.analysis, planned.cost
            passes = "no pass of its own" if not (cost.forwards or cost.backwards) else \
                f"{_passes(cost.forwards, 'forward')} and {_passes(cost.backwards, 'backward')} of its own"
            if cost.forward_equivalents is not None and cost.forwards:
                passes += f", costing ~{cost.forward_equivalents:.1f} full forwards"
            budget = stage_budgets(self, self.seconds_per_batch)[a.id] if self.seconds_per_batch is not None else 0.0
            if budget > 0:
                passes += f" [budget {_duration(budget)}]"
            lines.append(f"  {a.id:<14} {passes}" + (f" ({cost.note})" if cost.note else ""))
            for need in planned.needs.describe()[1:]:
                lines.append(f"  {'':<14} needs {need}")
        for analysis_id, reason in self.not_run.items():
            lines.append(f"  {analysis_id:<14} not run: {reason}")
        lines.append("")
        if not self.n_samples:
            lines.append("total: no pass over the data")
            return lines
        lines.append(f"total: {_passes(self.forwards, 'forward')} and {_passes(self.backwards, 'backward')} over "
                     f"the data ({self.steps} forward batch{'es' * (self.steps != 1)})")
        if self.estimate_seconds is not None:
            full = sum(p.cost.full_forwards for p in self.analyses) + self.capture.forwards
            lines.append(f"budget: ~{_duration(self.estimate_seconds)} on this machine: {full:.1f} full forwards and "
                         f"{_passes(self.backwards, 'backward')} at {self.seconds_per_batch * 1000:.1f} ms "  # type: ignore[operator]  # set above
                         f"a batch (one plain forward, timed{self.threads_note}); fits and rendering come on top")
        return lines


def stage_budgets(plan: Plan, seconds_per_batch: float) -> dict[str, float]:
    """Per stage (the capture, each planned analysis), what its passes should cost: its forwards in full
    forwards and its backwards, times `seconds_per_batch` (one plain forward of one batch) per batch."""
    per_pass = seconds_per_batch * plan.n_batches
    budgets = {"capture": per_pass * (plan.capture.forwards + BACKWARD_FACTOR * plan.capture.backwards)}
    for planned in plan.analyses:
        cost = planned.cost
        budgets[planned.analysis.id] = per_pass * (cost.full_forwards + BACKWARD_FACTOR * cost.backwards)
    return budgets


KINDS = ("generation", "causal_lm")
"""Tasks whose models are their own kind: an analysis made only for one of them is left out of other models'
reports, and one a model of that kind cannot take (it does not list the task) is left out of its report."""


def _other_kind(tasks: frozenset[str], task: str) -> bool:
    """Whether an analysis for `tasks` is made for another kind of model than one of `task` (generators, language
    models and models that decide): then the report does not list it, not even as "not run"."""
    return task not in tasks and any((tasks == frozenset({kind})) != (task == kind) for kind in KINDS)


def _passes(n: float, kind: str) -> str:
    return f"{round(n, 2):g} {kind} pass{'es' * (n != 1)}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def analysis_params(analysis_type: type[Analysis], table: Mapping[str, Any] | None) -> Any:
    """Validates `[analyses.<id>]` against the analysis's own parameters; errors name the key."""
    try:
        return analysis_type.params_type.model_validate(dict(table or {}))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(table)'}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"invalid [analyses.{analysis_type.id}]: {problems}") from None


def select(registry: Sequence[type[Analysis]], *, only: Sequence[str] | None,
           skip: Sequence[str]) -> tuple[list[type[Analysis]], dict[str, str]]:
    """The analyses to consider, in report order, and those skipped by the config."""
    known = {a.id: a for a in registry}
    unknown = [a for a in [*(only or []), *skip] if a not in known]
    if unknown:
        raise ConfigError(f"unknown analyses {unknown}; known: {sorted(known)}")
    chosen = [a for a in registry if (only is None or a.id in only) and a.id not in skip]
    skipped = {a.id: "skipped by the configuration" for a in registry if a not in chosen}
    return chosen, skipped


def make_plan(ctx: PlanContext, registry: Sequence[type[Analysis]], *, seconds_per_batch: float | None = None,
              threads: str | None = None) -> Plan:
    """Chooses the analyses, asks each what it needs and costs, and merges the needs into one capture."""
    selection = ctx.config.analyses
    candidates, not_run = select(registry, only=selection.only, skip=selection.skip)
    planned = []
    data_free = [a.id for a in registry if not a.needs_data]
    for analysis_type in candidates:
        if _other_kind(analysis_type.tasks, ctx.subject.task):
            continue  # made for another kind of model: not even "not run"
        if not ctx.subject.has_data and analysis_type.needs_data:
            if selection.only is not None and analysis_type.id in selection.only:
                raise ConfigError(f"{analysis_type.id} reads audit data, and none was given: pass --data PATH "
                                  f"(or [data] path in the config); without data only {', '.join(data_free)} run")
            not_run[analysis_type.id] = "no audit data was given (pass --data to run it)"
            continue
        analysis = analysis_type(analysis_params(analysis_type, selection.table(analysis_type.id)))
        try:
            reason = analysis.not_applicable(ctx)
            if reason is not None:
                not_run[analysis.id] = reason
                continue
            planned.append(PlannedAnalysis(analysis=analysis, needs=analysis.needs(ctx), cost=analysis.cost(ctx)))
        except AuditorError:
            raise  # the input is wrong: stop, exit 2
        except Exception as exc:  # one analysis that cannot plan loses its section, not the audit
            log.exception("planning analysis %s failed", analysis.id)
            planned.append(PlannedAnalysis(analysis=analysis, needs=Needs(), cost=Cost(), error=exc))
    order = {a.id: i for i, a in enumerate(registry)}
    capture = CapturePass(needs=Needs.union(p.needs for p in planned))
    titles = {a.id: a.title for a in registry}
    return Plan(analyses=tuple(planned), not_run=dict(sorted(not_run.items(), key=lambda kv: order[kv[0]])),
                not_run_titles={k: titles[k] for k in not_run},
                capture=capture, n_samples=len(ctx.subject), batch_size=ctx.config.batch_size,
                n_batches=ctx.n_batches,
                seconds_per_batch=seconds_per_batch if ctx.subject.has_data else None, threads=threads)
