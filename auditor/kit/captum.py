"""What the analyses that call Captum share: how many (sample × step) rows one attribution batch may hold, and
the attribution baseline as data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from auditor.subject import Subject
from auditor.subject.task import log_probabilities
from auditor.walk.records import iter_tensors


def per_sample_bytes(subject: Subject) -> int:
    """Bytes the outputs of every module take for one sample: what a forward keeps for its backward."""
    total = [0]

    def count(module: nn.Module, args: Any, output: Any) -> None:
        for t in iter_tensors(output):
            total[0] += t.numel() * t.element_size()

    handles = [m.register_forward_hook(count) for m in subject.model.modules()]
    try:
        with torch.no_grad():
            subject.adapter.forward(subject.model, subject.adapter.encode(0, 1))
    finally:
        for h in handles:
            h.remove()
    return max(total[0], 1)


def internal_batch_size(subject: Subject, budget_mb: int) -> int:
    """Rows (sample × step) per IG batch that fit `budget_mb`: forward outputs kept, plus their gradients."""
    return max(1, int(budget_mb * 2**20 // (2 * per_sample_bytes(subject))))


@dataclass(frozen=True)
class Baseline:
    """The attribution baseline as data, so that it travels with an executor's items: pad tokens (text: the
    subject's `inputs.baseline`), the audit data's mean input (carried, not recomputed on a replica), or zeros (a
    black image)."""

    kind: Literal["pad", "mean", "zeros"]
    mean: torch.Tensor | None = None
    """`kind = "mean"`: the mean input, one sample's shape."""

    def of(self, subject: Subject, x: torch.Tensor) -> torch.Tensor:
        """The baseline of input `x` (a batch) for `subject`'s model."""
        if self.kind == "pad":
            return subject.inputs.baseline(x)
        if self.kind == "mean" and self.mean is not None:
            return self.mean.to(x.device).expand_as(x).contiguous()
        return torch.zeros_like(x)


def target_log_probabilities(subject: Subject, scores: torch.Tensor) -> torch.Tensor:
    """(batch, targets) log-probabilities that an explanation's `target` indexes: every class's for a classifier;
    for a task whose target reads the inputs (a causal LM: scores are next-token losses), the log-probability of
    the real next token after each position, so that a target is a position (NaN where nothing is audited)."""
    if subject.head.target_reads_inputs:
        return -scores
    return log_probabilities(scores)


def target_probabilities(subject: Subject, scores: torch.Tensor) -> torch.Tensor:
    """(batch, targets) probabilities that a deletion curve follows: the softmax of a classifier's scores (as
    they always were), or a causal LM's probability of the real next token after each position."""
    if subject.head.target_reads_inputs:
        return torch.exp(-scores.float())
    return torch.softmax(scores.float(), dim=1)


def target_log_probability_fn(subject: Subject, model: nn.Module, keys: Sequence[str]) -> Callable[..., torch.Tensor]:
    """Positional tensors (the inputs named `keys`, in that order) -> `target_log_probabilities` of `model` (or
    any copy of it): Captum's `forward_func`. Under Layer Integrated Gradients the token ids stay the real ones
    and only the embeddings are interpolated, so a language model's next tokens stay the real next tokens."""
    def forward(*tensors: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(keys, tensors, strict=True))
        return target_log_probabilities(subject, subject.adapter.forward(model, inputs))
    return forward
