"""Explaining a causal language model's predictions: which next-token predictions to explain, and Layer Integrated
Gradients over the input embeddings for one batch of them (what the attribution and trust analyses share).

A prediction is (text, position j): the model's log-probability of the real token j + 1 given tokens 0..j, the
column j of `target_log_probabilities`. A causal model reads only the prefix, so every attribution lies on
positions ≤ j. Per text two are explained, chosen by what the model did: the audited position where it is most
confident and right (its top-1 token is the real one, with the highest probability), and the one where it is most
wrong (the lowest probability of the real token). The first shows what the model relies on when it works, the
second what misled it; with `prompt`/`completion` data only completion tokens are audited, so only they are chosen.

Under Layer Integrated Gradients the token ids stay the real ones and only the embeddings are interpolated from
the baseline's (pad, or BOS/EOS, tokens: `subject.inputs.baseline`), so the next tokens scored stay the real
next tokens. Captum's own convergence delta would score the baseline's tokens instead; here F(baseline) is the
model on the real ids with the embeddings module's output replaced by the baseline's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients

from auditor.kit.captum import target_log_probability_fn
from auditor.kit.lm import audited_positions, hooks
from auditor.subject import Subject
from auditor.subject.inputs import TextInputs

PredictionKind = Literal["confident", "wrong"]


@dataclass(frozen=True)
class Prediction:
    """One next-token prediction to explain."""

    text: int
    """The sample index of the text."""
    position: int
    """Column j: the token after position j, predicted from tokens 0..j."""
    kind: PredictionKind
    log_p: float
    """The model's log-probability of the real next token."""
    actual: int
    """The real next token's id."""
    predicted: int
    """The model's top-1 token's id."""


def input_embeddings(subject: Subject) -> str | None:
    """The name of the model's input (token) embeddings module (`get_input_embeddings()`), if it has one."""
    get = getattr(subject.model, "get_input_embeddings", None)
    module = get() if callable(get) else None
    if module is None:
        return None
    return next((n for n, m in subject.model.named_modules() if m is module), None)


def texts_to_explain(subject: Subject, count: int, *, seed: int) -> list[int]:
    """A seeded draw of `count` texts, in data order."""
    n = len(subject)
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n)[:count])


def choose_predictions(subject: Subject, texts: Sequence[int], *, batch_size: int) -> list[Prediction]:
    """Per text its most confident correct prediction and its most wrong one (one forward over `texts`), among
    the audited positions whose prefix holds a token besides the sequence markers."""
    out: list[Prediction] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        inputs = subject.encode_samples(chunk)
        with torch.no_grad():
            log_p = torch.log_softmax(subject.adapter.logits(subject.model, inputs).float(), dim=-1)
        nxt = inputs["input_ids"].roll(-1, dims=1)
        picked = log_p.gather(2, nxt.unsqueeze(2)).squeeze(2)
        top = log_p.argmax(dim=-1)
        # a prefix of sequence markers only (BOS) is its own baseline: nothing in it to attribute
        markers = torch.tensor(subject.adapter.marker_ids(), dtype=nxt.dtype, device=nxt.device)
        read = (~torch.isin(inputs["input_ids"], markers)).long().cumsum(dim=1) > 0
        where = audited_positions(inputs) & read
        for row, text in enumerate(chunk):
            out += _of_text(text, torch.nonzero(where[row]).flatten(), picked[row], top[row], nxt[row])
    return out


def _of_text(text: int, audited: torch.Tensor, picked: torch.Tensor, top: torch.Tensor,
             nxt: torch.Tensor) -> list[Prediction]:
    if audited.numel() == 0:
        return []
    values = picked[audited]
    correct = top[audited] == nxt[audited]

    def make(k: int, kind: PredictionKind) -> Prediction:
        j = int(audited[k])
        return Prediction(text, j, kind, float(values[k]), int(nxt[j]), int(top[j]))
    chosen = []
    if bool(correct.any()):
        chosen.append(make(int(torch.where(correct, values, torch.full_like(values, -torch.inf)).argmax()),
                           "confident"))
    worst = int(values.argmin())
    if not chosen or int(audited[worst]) != chosen[0].position:
        chosen.append(make(worst, "wrong"))
    return chosen


@dataclass(frozen=True)
class PredictionChunk:
    """Layer IG over the embeddings module `layer` for some predictions (a text may come twice)."""

    texts: tuple[int, ...]
    positions: tuple[int, ...]
    keys: tuple[str, ...]
    layer: str
    n_steps: int
    internal: int


def prediction_chunk(subject: Subject, chunk: PredictionChunk) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per prediction and token the attribution (hidden units summed, padding zeroed; zero after the predicted
    position), IG's convergence delta (the attributions' sum less the gain) and the gain F(x) - F(baseline)."""
    text = subject.inputs
    assert isinstance(text, TextInputs)  # a language model reads tokens
    inputs = subject.encode_samples(chunk.texts)
    key = text.key
    ids = inputs[key]
    others = tuple(inputs[k] for k in chunk.keys if k != key)
    forward = target_log_probability_fn(subject, subject.model, [key, *[k for k in chunk.keys if k != key]])
    layer = subject.model.get_submodule(chunk.layer)
    base = text.baseline(ids)
    target = torch.tensor(chunk.positions, dtype=torch.long, device=ids.device)
    result: Any = LayerIntegratedGradients(forward, layer).attribute(
        ids, baselines=base, target=target, additional_forward_args=others or None, n_steps=chunk.n_steps,
        method="gausslegendre", internal_batch_size=chunk.internal)
    attr = torch.as_tensor(result).detach().float()
    with torch.no_grad():
        real = forward(ids, *others).gather(1, target[:, None]).flatten()
        base_embeddings = layer(base)
        with hooks(subject.model, forward=[(chunk.layer, lambda module, args, output: base_embeddings)]):
            start = forward(ids, *others).gather(1, target[:, None]).flatten()
    gain = (real - start).float()
    delta = attr.sum(dim=tuple(range(1, attr.dim()))) - gain
    return text.per_position(attr, inputs), delta, gain
