"""The Analysis base, the contexts it plans and runs in, and `run_one` (a failing analysis is an entry).

An analysis is one file with one job. Before anything runs, the plan asks it whether it applies, what it
needs from the shared capture (`needs`) and what it costs beyond that capture (`cost`); then `run` reads
the capture, asks the executor for any passes of its own, and returns a Section.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from auditor.config import AuditConfig
from auditor.engine.capture import Capture
from auditor.walk.needs import Needs
from auditor.engine.passes import PatchedPass
from auditor.engine.prefix import PrefixRun
from auditor.engine.prefix_plan import PassRoute
from auditor.engine.trace import Traced, time_modules, trace_modules
from auditor.errors import AuditorError
from auditor.schema.findings import DefaultRule, Finding, Findings, FindingSpec, Severity
from auditor.progress import Progress, SilentProgress
from auditor.schema.report import Cost, ModuleRow, Section
from auditor.subject import Modality, Subject, Task
from auditor.subject.task import CleanMetrics
from auditor.walk.blocks import Block
from auditor.walk.heads import attention_heads
from auditor.walk.joins import Join, find_joins
from auditor.walk.rows import module_rows
from auditor.walk.tree import ModuleTree

if TYPE_CHECKING:
    from auditor.engine.executor import Executor


log = logging.getLogger("auditor")


class NoParams(BaseModel):
    """An analysis without parameters: its `[analyses.<id>]` table must be empty."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass
class PlanContext:
    """What an analysis may look at before the capture runs: the subject, its modules and blocks, the config."""

    subject: Subject
    tree: ModuleTree
    blocks: list[Block]
    config: AuditConfig

    @property
    def n_batches(self) -> int:
        return self.subject.n_batches(self.config.batch_size)

    def block_names(self, *kinds: str) -> frozenset[str]:
        """Names of the blocks of the given kinds (all blocks when none is given)."""
        return frozenset(b.name for b in self.blocks if not kinds or b.kind in kinds)

    @cached_property
    def joins(self) -> list[Join]:
        """The model's residual sums (branch + stream), found once on a 2-sample forward."""
        return find_joins(self.subject, self.tree, self.blocks)

    @cached_property
    def attention_heads(self) -> tuple[int, frozenset[str]]:
        """(heads per layer, the self-attention modules whose output splits into heads), from the model config."""
        return attention_heads(self.subject.model, self.tree)

    @cached_property
    def traced(self) -> dict[str, Traced]:
        """Every module's call order, call count and output shape, and whether its output can stand in for its
        forward (cached prefixes), from one traced forward over two samples."""
        return trace_modules(self.subject, self.tree)

    @cached_property
    def module_seconds(self) -> dict[str, float]:
        """Every module's inclusive forward time over one timed forward of the first batch (to estimate what
        passes on cached prefixes cost before they run)."""
        return time_modules(self.subject, self.tree, self.config.batch_size)


@dataclass
class AuditContext(PlanContext):
    """What an analysis runs on: the plan context plus the shared capture and the executor for its own passes."""

    capture: Capture = field(kw_only=True)
    executor: Executor = field(kw_only=True)
    progress: Progress = field(default_factory=SilentProgress, kw_only=True)

    @classmethod
    def after(cls, plan: PlanContext, *, capture: Capture, executor: Executor,
              progress: Progress | None = None) -> AuditContext:
        """The run context of a plan context: what the plan already worked out (joins) is not redone."""
        ctx = cls(subject=plan.subject, tree=plan.tree, blocks=plan.blocks, config=plan.config, capture=capture,
                  executor=executor, progress=progress or SilentProgress())
        for worked_out in ("joins", "traced", "attention_heads", "module_seconds"):
            if worked_out in plan.__dict__:
                ctx.__dict__[worked_out] = plan.__dict__[worked_out]
        return ctx

    @cached_property
    def clean(self) -> CleanMetrics:
        """The intact model's predictions, accuracy, loss and per-class recall on the audit data, computed once."""
        return self.subject.head.metrics(self.capture.scores, self.subject.labels)

    @cached_property
    def targets(self) -> torch.Tensor:
        """Per sample, the class an explanation explains: the labelled one, else the predicted one (a
        non-finite prediction: class 0)."""
        if self.subject.labels is not None:
            return self.subject.labels.clone()
        return self.clean.predictions.clamp_min(0)

    def patched_scores(self, passes: list[PatchedPass], *, cache_bytes: int, stack: int = 1
                       ) -> tuple[list[torch.Tensor], list[PassRoute | None], PrefixRun | None]:
        """Every patched pass's scores, in order, on cached prefixes (what precedes the first patched module is
        recorded once, within `cache_bytes`; up to `stack` passes sharing one forward on stacked copies of the
        batch), run by the executor: here, or spread over a cluster's actors."""
        seconds = {name: record.seconds for name, record in self.capture.records.items()}
        run = self.executor.patched_run(passes, traced=self.traced, seconds=seconds, cache_bytes=cache_bytes,
                                        stack=stack)
        return run.scores, list(run.routes), run

    @cached_property
    def rows(self) -> list[ModuleRow]:
        """The module table: the tree joined with what the capture recorded, computed once."""
        return module_rows(self.tree, self.capture.records, self.capture.forwards)


GENERIC_FINDINGS = (
    FindingSpec("nan_metric", Severity.FAIL,
                "a metric of the section is NaN and the analysis did not already fail it: a NaN is never shown as OK "
                "(its metric card is red too)"),
    FindingSpec("analysis_failed", Severity.FAIL, "an analysis raised; its section shows the error"),
)
"""The findings any analysis may get from the engine (`<analysis>.nan_metric`, `<analysis>.analysis_failed`)."""


class Analysis:
    """One question asked of the model. Stateless: its parameters are data, set once in `__init__`.

    `id` names its findings (`<id>.<condition>`), its config table (`[analyses.<id>]`), its template
    (`sections/<id>.html.j2`) and its test file. `findings` declares every finding it may give (its code
    builds them with `findings.finding(...)`), `default_rules` the metric rules of the default policy;
    docs/findings.md and `auditor policy init`'s file are written from both (`auditor.policy.catalogue`).
    """

    id: ClassVar[str]
    title: ClassVar[str]
    modalities: ClassVar[frozenset[Modality]] = frozenset({"text", "image", "tabular"})
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "embedding"})
    params_type: ClassVar[type[BaseModel]] = NoParams
    cost_note: ClassVar[str] = "reads the shared capture; no pass of its own"
    """What the analysis costs, in words, for `auditor analyses` (no model at hand there)."""
    needs_data: ClassVar[bool] = True
    """False for an analysis that reads only the model (its weights): it runs in an audit without data."""
    findings: ClassVar[Findings] = Findings("")
    default_rules: ClassVar[tuple[DefaultRule, ...]] = ()

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params: BaseModel = params if params is not None else self.params_type()

    def not_applicable(self, ctx: PlanContext) -> str | None:
        """Why the analysis does not apply to this subject, or None when it does."""
        if ctx.subject.modality not in self.modalities:
            return f"does not apply to {ctx.subject.modality} data"
        if ctx.subject.task not in self.tasks:
            if ctx.subject.task == "embedding":
                return "the model is a bare encoder without a head (no decision); add one with --head"
            return f"does not apply to the {ctx.subject.task} task"
        return None

    def needs(self, ctx: PlanContext) -> Needs:
        """What the shared capture must record for `run`."""
        return Needs()

    def cost(self, ctx: PlanContext) -> Cost:
        """What `run` costs beyond the shared capture, in passes over the audit data."""
        return Cost(note=self.cost_note)

    def run(self, ctx: AuditContext) -> Section:
        raise NotImplementedError


def run_one(analysis: Analysis, ctx: AuditContext, *, cost: Cost | None = None) -> Section:
    """Runs one analysis; anything but bad user input becomes an error section, and the audit goes on."""
    started = time.perf_counter()
    cost = cost if cost is not None else analysis.cost(ctx)
    try:
        section = analysis.run(ctx)
    except AuditorError:
        raise  # the input is wrong: stop, exit 2
    except Exception as exc:
        log.exception("analysis %s failed", analysis.id)
        return Section.failed(analysis.id, analysis.title, exc, seconds=time.perf_counter() - started)
    return flag_nan_metrics(section).model_copy(update={"seconds": time.perf_counter() - started, "cost": cost})


def flag_nan_metrics(section: Section) -> Section:
    """A NaN metric never passes quietly: unless the analysis already failed the section, it gets a
    failing `<id>.nan_metric` finding, so the badge, the verdict and a policy all see it."""
    nan = sorted(key for key, value in section.metrics.items() if math.isnan(value))
    if not nan or any(f.severity is Severity.FAIL for f in section.findings):
        return section
    finding = Finding(
        id=f"{section.id}.nan_metric", severity=Severity.FAIL,
        message=f"{', '.join(nan)} {'is' if len(nan) == 1 else 'are'} NaN (not a number): "
                f"the {section.title.lower()} numbers cannot be trusted.",
        evidence={"metrics": ", ".join(nan)},
    )
    return section.model_copy(update={"findings": [*section.findings, finding]})
