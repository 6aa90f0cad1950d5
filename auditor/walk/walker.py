"""Stage 2, walk modules: one hooked forward pass per batch over the audit data."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from auditor.errors import DataError
from auditor.progress import Progress
from auditor.subject import Subject
from auditor.walk.recorder import ModuleRecord, Recorder
from auditor.walk.tree import ModuleTree


@dataclass
class WalkResult:
    """What the single hooked pass produced: per-module records and the model's scores per sample."""

    records: dict[str, ModuleRecord]
    scores: torch.Tensor
    """(samples, outputs) on the CPU: logits, or a bare encoder's pooled hidden state."""
    forwards: int
    seconds: float


def walk(subject: Subject, tree: ModuleTree, *, batch_size: int, progress: Progress) -> WalkResult:
    """Runs the model once over every batch with a Recorder on every module; hooks go when it ends."""
    model = subject.model
    n_batches = -(-len(subject) // batch_size)
    scores: list[torch.Tensor] = []
    started = time.perf_counter()
    with torch.no_grad(), Recorder(tree) as recorder:
        for batch in progress.track(subject.batches(batch_size), total=n_batches, description="walking modules"):
            recorder.begin_forward()
            try:
                out = subject.adapter.forward(model, batch.inputs)
            except Exception as err:
                message = " ".join(str(err).split())[:300]
                raise DataError(f"the model failed on samples {batch.start}..{batch.stop - 1}: "
                                f"{type(err).__name__}: {message}") from err
            scores.append(out.detach().float().cpu())
    return WalkResult(records=recorder.records, scores=torch.cat(scores), forwards=recorder.forwards,
                      seconds=time.perf_counter() - started)
