"""The Analysis protocol, the shared AuditContext, and `run_one` (a failing analysis is an entry)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import ClassVar, Protocol

from auditor.config import AuditConfig
from auditor.errors import AuditorError
from auditor.findings import Finding, Severity
from auditor.progress import Progress, SilentProgress
from auditor.report.schema import Cost, Section
from auditor.subject import Modality, Subject, Task
from auditor.walk.tree import ModuleTree
from auditor.walk.walker import WalkResult

log = logging.getLogger("auditor")


@dataclass
class AuditContext:
    """What every analysis reads: the subject, the module tree, the walk's records, the config."""

    subject: Subject
    tree: ModuleTree
    walk: WalkResult
    config: AuditConfig
    progress: Progress = SilentProgress()

    @property
    def n_batches(self) -> int:
        return -(-len(self.subject) // self.config.batch_size)


class Analysis(Protocol):
    """One question asked of the model; stateless, its parameters are data.

    `id` names its findings (`<id>.<condition>`), its template (`sections/<id>.html.j2`) and its test.
    """

    id: ClassVar[str]
    title: ClassVar[str]
    modalities: ClassVar[frozenset[Modality]]
    tasks: ClassVar[frozenset[Task]]

    def cost(self, ctx: AuditContext) -> Cost:
        """What `run` costs beyond the shared walk, in passes over the audit data."""
        ...

    def run(self, ctx: AuditContext) -> Section: ...


def applies(analysis: Analysis, ctx: AuditContext) -> bool:
    return ctx.subject.modality in analysis.modalities and ctx.subject.task in analysis.tasks


def run_one(analysis: Analysis, ctx: AuditContext) -> Section:
    """Runs one analysis; anything but bad user input becomes an error section, and the audit goes on."""
    started = time.perf_counter()
    try:
        section = analysis.run(ctx)
    except AuditorError:
        raise  # the input is wrong: stop, exit 2
    except Exception as exc:
        log.exception("analysis %s failed", analysis.id)
        return Section.failed(analysis.id, analysis.title, exc, seconds=time.perf_counter() - started)
    return flag_nan_metrics(section).model_copy(
        update={"seconds": time.perf_counter() - started, "cost": analysis.cost(ctx)})


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
