"""Explainers the trust checks can run on any copy of the model (the user's, or a re-initialized one).

An explainer is a function `(setup, model, inputs, target) -> map`: the same method as the attribution
section, as one map per sample over the positions a reader sees: pixels (channels summed) for images,
features for arrays, tokens (hidden units summed, padding zeroed) for text. Maps are signed.
Custom explainers (a new method, or a broken one a test plants) are passed to `Trust(explainers=...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from captum.attr import (InputXGradient, IntegratedGradients, LayerGradientXActivation,
                         LayerIntegratedGradients, Saliency)
from torch import nn

from auditor.kit.captum import Baseline, target_log_probability_fn
from auditor.subject import Subject


@dataclass(frozen=True)
class ExplainSetup:
    """What every explainer needs besides the model: how inputs are laid out and the attribution baseline."""

    subject: Subject
    keys: Sequence[str]
    """Input names in the order the model takes them."""
    key: str
    """The input attributed (`subject.inputs.key`): the float image/array input, or `input_ids` for text."""
    baseline: Callable[[torch.Tensor], torch.Tensor]
    """The attribution baseline of an input tensor (black or data-mean images, pad tokens for text)."""
    embeddings: str | None
    """Text: the name of the embeddings module that token attributions are taken over."""
    n_steps: int
    internal_batch_size: int

    @property
    def text(self) -> bool:
        """Whether attributions are taken over the embeddings (text) rather than the input itself."""
        return self.subject.inputs.is_text

    def forward(self, model: nn.Module) -> Callable[..., torch.Tensor]:
        """Positional tensors (in `keys` order, the attributed one first) -> the targets' log-probabilities
        (`target_log_probabilities`: classes, or a language model's next tokens by position)."""
        return target_log_probability_fn(self.subject, model, [self.key, *[k for k in self.keys if k != self.key]])

    def split(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The attributed input and the others, as Captum's `inputs` and `additional_forward_args`."""
        others = tuple(inputs[k] for k in self.keys if k != self.key)
        return inputs[self.key], (others or None)


Explainer = Callable[[ExplainSetup, nn.Module, dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ExplainSpec:
    """An `ExplainSetup` less its subject, as data: what an executor's item carries to a model replica, which
    binds it to its own subject (`bind`)."""

    keys: tuple[str, ...]
    key: str
    baseline: Baseline
    embeddings: str | None
    n_steps: int
    internal_batch_size: int

    def bind(self, subject: Subject) -> ExplainSetup:
        return ExplainSetup(subject=subject, keys=list(self.keys), key=self.key,
                            baseline=partial(self.baseline.of, subject), embeddings=self.embeddings,
                            n_steps=self.n_steps, internal_batch_size=self.internal_batch_size)


def explain(explainer: Explainer, setup: ExplainSetup, model: nn.Module, inputs: dict[str, torch.Tensor],
            target: torch.Tensor) -> torch.Tensor:
    """One explainer's maps, one per sample: (samples, H, W) for images, (samples, positions) otherwise."""
    maps = explainer(setup, model, inputs, target)
    return maps.detach().float() if setup.subject.inputs.spatial else maps.detach().float().reshape(maps.shape[0], -1)


def to_positions(setup: ExplainSetup, attribution: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """An attribution shaped like the input (or the embeddings) -> one signed value per position."""
    return setup.subject.inputs.per_position(attribution, inputs)


def _module(model: nn.Module, name: str | None) -> nn.Module:
    assert name is not None
    module: nn.Module = model.get_submodule(name)
    return module


def integrated_gradients(setup: ExplainSetup, model: nn.Module, inputs: dict[str, torch.Tensor],
                         target: torch.Tensor) -> torch.Tensor:
    x, others = setup.split(inputs)
    result: Any
    if setup.text:
        method = LayerIntegratedGradients(setup.forward(model), _module(model, setup.embeddings))
        result = method.attribute(x, baselines=setup.baseline(x), target=target, additional_forward_args=others,
                                  n_steps=setup.n_steps, internal_batch_size=setup.internal_batch_size)
    else:
        result = IntegratedGradients(setup.forward(model)).attribute(
            x, baselines=setup.baseline(x), target=target, additional_forward_args=others, n_steps=setup.n_steps,
            internal_batch_size=setup.internal_batch_size)
    return to_positions(setup, torch.as_tensor(result), inputs)


def input_x_gradient(setup: ExplainSetup, model: nn.Module, inputs: dict[str, torch.Tensor],
                     target: torch.Tensor) -> torch.Tensor:
    x, others = setup.split(inputs)
    result: Any
    if setup.text:
        result = LayerGradientXActivation(setup.forward(model), _module(model, setup.embeddings)).attribute(
            x, target=target, additional_forward_args=others)
    else:
        result = InputXGradient(setup.forward(model)).attribute(x.detach().requires_grad_(), target=target,
                                                                additional_forward_args=others)
    return to_positions(setup, torch.as_tensor(result), inputs)


def gradient(setup: ExplainSetup, model: nn.Module, inputs: dict[str, torch.Tensor],
             target: torch.Tensor) -> torch.Tensor:
    """The signed gradient (saliency before its absolute value); images and arrays only."""
    x, others = setup.split(inputs)
    result = Saliency(setup.forward(model)).attribute(x.detach().requires_grad_(), target=target, abs=False,
                                                      additional_forward_args=others)
    return to_positions(setup, torch.as_tensor(result), inputs)


IMAGE_EXPLAINERS: dict[str, Explainer] = {"integrated_gradients": integrated_gradients,
                                          "input_x_gradient": input_x_gradient, "gradient": gradient}
TEXT_EXPLAINERS: dict[str, Explainer] = {"integrated_gradients": integrated_gradients,
                                         "input_x_gradient": input_x_gradient}
TITLES = {"integrated_gradients": "Integrated Gradients", "input_x_gradient": "Gradient × input",
          "gradient": "Gradient (saliency, signed)"}
SHORT = {"integrated_gradients": "IG", "input_x_gradient": "G×I", "gradient": "Grad"}
MULTIPLIES_BY_INPUT = frozenset({"integrated_gradients", "input_x_gradient"})
