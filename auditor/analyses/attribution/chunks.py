"""Integrated Gradients over chunks of samples, as independent items of an executor's `map`: each chunk runs on
whichever model replica takes it (here, or an actor of a cluster) and returns its attributions, convergence
deltas and target gains, which the section joins in sample order.

A chunk is data (the sample indices, their targets, the baseline, the steps); the replica encodes its samples
itself and only reads its model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients

from auditor.analyses.attribution.common import forward_fn
from auditor.kit.captum import Baseline
from auditor.subject import Subject
from auditor.subject.inputs import TextInputs
from auditor.subject.task import log_probabilities


def sample_chunks(samples: list[int], size: int) -> list[list[int]]:
    """`samples` in consecutive chunks of `size` (a batch each)."""
    return [samples[i:i + size] for i in range(0, len(samples), size)]


@dataclass(frozen=True)
class ImageChunk:
    """IG from `baseline` over the input `key` of some samples (images and arrays)."""

    samples: tuple[int, ...]
    target: torch.Tensor
    keys: tuple[str, ...]
    key: str
    baseline: Baseline
    n_steps: int
    internal: int


def image_chunk(subject: Subject, chunk: ImageChunk) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chunk's attributions (samples, *input), IG's convergence deltas and F(x) - F(baseline) of the target."""
    forward = forward_fn(subject, list(chunk.keys))
    x = subject.encode_samples(chunk.samples)[chunk.key]
    base = chunk.baseline.of(subject, x)
    target = chunk.target
    attr, delta = IntegratedGradients(forward).attribute(x, baselines=base, target=target, n_steps=chunk.n_steps,
                                                         internal_batch_size=chunk.internal,
                                                         return_convergence_delta=True)
    with torch.no_grad():
        gain = forward(x).gather(1, target[:, None]) - forward(base).gather(1, target[:, None])
    return attr.detach(), delta.detach().float(), gain.flatten().float()


@dataclass(frozen=True)
class TextChunk:
    """Layer IG over the embeddings module `layer` of some samples, from pad tokens; `gain`: also the target's
    log-probability gain over the baseline (the convergence check's denominator)."""

    samples: tuple[int, ...]
    target: torch.Tensor
    keys: tuple[str, ...]
    layer: str
    n_steps: int
    method: str
    internal: int | None
    gain: bool


def text_chunk(subject: Subject, chunk: TextChunk) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per sample and token the attribution (hidden units summed, padding zeroed); IG's convergence deltas
    (Gauss-Legendre only) and the target's gain when asked."""
    text = subject.inputs
    assert isinstance(text, TextInputs)  # text chunks are made for a text subject only
    inputs = subject.encode_samples(chunk.samples)
    key = text.key
    ids = inputs[key]
    others = tuple(inputs[k] for k in chunk.keys if k != key)
    forward = forward_fn(subject, [key, *[k for k in chunk.keys if k != key]])
    lig = LayerIntegratedGradients(forward, subject.model.get_submodule(chunk.layer))
    base_inputs = text.baseline_inputs(inputs)
    base = base_inputs[key]
    result = lig.attribute(ids, baselines=base, target=chunk.target, additional_forward_args=others or None,
                           n_steps=chunk.n_steps, method=chunk.method, internal_batch_size=chunk.internal,
                           return_convergence_delta=chunk.method == "gausslegendre")
    attr, delta = result if isinstance(result, tuple) else (result, None)
    per_token = text.per_position(attr, inputs)
    gain = None
    if chunk.gain:
        target = chunk.target[:, None]
        with torch.no_grad():
            real = log_probabilities(subject.adapter.forward(subject.model, inputs)).gather(1, target)
            baseline = log_probabilities(subject.adapter.forward(subject.model, base_inputs))
            gain = (real - baseline.gather(1, target)).flatten().float()
    return per_token, (delta.detach().float() if delta is not None else None), gain
