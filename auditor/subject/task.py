"""What the model's output means: the per-sample target every gradient and attribution differentiates,
and the clean metrics every comparison starts from.

A task is one small object; analyses never branch on the task name. Today: classification (target: the
log-probability of the labelled class, or of the predicted class without labels) and embedding (a bare
encoder: no decision, so no target) and causal_lm (a language model: its adapter scores are (batch, tokens)
next-token losses, NaN where a token is not audited: padding, a prompt, the first token; target = the mean
log-probability of the audited next tokens, metrics = their mean loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

Task = Literal["classification", "embedding", "generation", "causal_lm"]


def log_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """(batch, classes) log-probabilities: log-softmax of logits; one logit is binary (log-sigmoid)."""
    if scores.shape[1] == 1:
        return torch.cat([torch.nn.functional.logsigmoid(-scores), torch.nn.functional.logsigmoid(scores)], dim=1)
    return torch.log_softmax(scores, dim=1)


@dataclass(frozen=True)
class CleanMetrics:
    """The intact model on the audit data: what every ablation, patch or faithfulness curve compares to."""

    predictions: torch.Tensor
    """(samples,) predicted class; -1 where the scores are not finite (a NaN answer is a wrong answer)."""
    correct: torch.Tensor | None
    """(samples,) bool, when there are labels."""
    accuracy: float | None
    loss: float | None
    """Mean negative log-likelihood of the labelled class."""
    class_recall: dict[int, float]
    """Recall of every class that has labelled samples."""


class TaskHead(Protocol):
    """The meaning of a model's scores."""

    name: Task
    has_target: bool
    """False when there is no decision to differentiate (a bare encoder)."""
    per_class: bool
    """Whether each sample's target is one class's score, so numbers can be split by class."""
    target_reads_inputs: bool
    """Whether the target is scored against the input itself (a language model's next tokens are its input
    tokens): a baseline input then changes what is scored, and no integrated gradients run from one."""

    def target_phrase(self, labelled: bool) -> str:
        """The target, as a report says it: "the log-probability of the labelled class"."""
        ...

    def target(self, scores: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(batch,) differentiable per-sample scalar that gradients and attributions explain."""
        ...

    def metrics(self, scores: torch.Tensor, labels: torch.Tensor | None) -> CleanMetrics: ...


class Classification:
    """Class scores: target is the log-probability of the labelled class (the predicted one without labels)."""

    name: Task = "classification"
    has_target = True
    per_class = True
    target_reads_inputs = False

    def target_phrase(self, labelled: bool) -> str:
        return f"the log-probability of the {'labelled' if labelled else 'predicted'} class"

    def target(self, scores: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        log_p = log_probabilities(scores)
        chosen = labels if labels is not None else log_p.detach().argmax(dim=1)
        return log_p.gather(1, chosen.to(log_p.device).long().unsqueeze(1)).squeeze(1)

    def metrics(self, scores: torch.Tensor, labels: torch.Tensor | None) -> CleanMetrics:
        log_p = log_probabilities(scores.detach().double())
        finite = torch.isfinite(log_p).all(dim=1)
        predictions = torch.where(finite, log_p.argmax(dim=1), torch.full_like(finite, -1, dtype=torch.long))
        if labels is None:
            return CleanMetrics(predictions=predictions, correct=None, accuracy=None, loss=None, class_recall={})
        labels = labels.to(predictions.device)
        correct = predictions == labels
        picked = log_p[torch.arange(len(labels)), labels].clamp_min(math.log(1e-12))
        recall = {int(c): float(correct[labels == c].double().mean()) for c in sorted(set(labels.tolist()))}
        return CleanMetrics(predictions=predictions, correct=correct, accuracy=float(correct.double().mean()),
                            loss=float(-picked.mean()), class_recall=recall)


class Embedding:
    """A bare encoder's pooled hidden state: no decision, so nothing to attribute and no accuracy."""

    name: Task = "embedding"
    has_target = False
    per_class = False
    target_reads_inputs = False

    def target_phrase(self, labelled: bool) -> str:
        return "none (no decision)"

    def target(self, scores: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        raise ValueError("an embedding model has no decision to differentiate; add a head (--head) first")

    def metrics(self, scores: torch.Tensor, labels: torch.Tensor | None) -> CleanMetrics:
        return CleanMetrics(predictions=torch.empty(0, dtype=torch.long), correct=None, accuracy=None, loss=None,
                            class_recall={})


class Generation(Embedding):
    """A generator's samples: no decision of its own; judges (a discriminator, a classifier) score them."""

    name: Task = "generation"

    def target(self, scores: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        raise ValueError("a generator has no decision of its own to differentiate; its judges score its samples")


def audited_mean(losses: torch.Tensor) -> torch.Tensor:
    """(batch,) mean of each row's audited next-token losses (the non-NaN entries; 0 for a row with none),
    differentiable: the NaN entries get no gradient."""
    audited = ~torch.isnan(losses)
    total = torch.where(audited, losses, torch.zeros_like(losses)).sum(dim=1)
    return total / audited.sum(dim=1).clamp_min(1)


class CausalLM:
    """A causal language model: scores are per-token next-token losses (NaN where a token is not audited); the
    target is the mean log-probability of the audited next tokens of a text, the metric their mean loss."""

    name: Task = "causal_lm"
    has_target = True
    per_class = False
    target_reads_inputs = True

    def target_phrase(self, labelled: bool) -> str:
        return "the mean log-probability of each text's audited next tokens"

    def target(self, scores: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return -audited_mean(scores)

    def metrics(self, scores: torch.Tensor, labels: torch.Tensor | None) -> CleanMetrics:
        losses = scores.detach().double()
        audited = ~torch.isnan(losses)
        loss = float(losses[audited].mean()) if bool(audited.any()) else None
        return CleanMetrics(predictions=torch.empty(0, dtype=torch.long), correct=None, accuracy=None, loss=loss,
                            class_recall={})


def task_head(task: Task) -> TaskHead:
    """The TaskHead of a task name."""
    heads: dict[Task, TaskHead] = {"classification": Classification(), "embedding": Embedding(),
                                   "generation": Generation(), "causal_lm": CausalLM()}
    return heads[task]
