"""The judges of a generator's samples: its discriminator (how real do they look?) and, optionally, a classifier
trained on the real data (which class does each look like, how sure is it, how varied are they?).

A judge is any module that takes a batch of samples shaped as the generator returns them. The
discriminator answers one realness score per sample (a logit, or a probability); a conditional
discriminator (a `forward` with two required arguments) also gets the class each sample was asked for.
The classifier answers class scores (a tensor, a tuple whose first item is one, or an output with `logits`).
Features for diversity are the input of the judge's last linear layer (its penultimate features), read by
a hook; a judge without a linear layer gives its output instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from torch import nn

from auditor.subject.loading import LoadedModel


@dataclass(frozen=True)
class Verdicts:
    """What the judges say about N samples."""

    realness: torch.Tensor
    """(N,) the discriminator's realness in [0, 1] (its probability that the sample is real)."""
    probabilities: torch.Tensor | None
    """(N, classes) the classifier's class probabilities, when there is a classifier."""
    features: torch.Tensor
    """(N, F) the features diversity is measured in: the classifier's penultimate features (else the
    discriminator's)."""
    features_from: str
    """Which judge's features, in words."""


def _scores(output: Any) -> torch.Tensor:
    """A judge's answer as a tensor: itself, `logits`, or the first tensor of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) or hasattr(output, "keys"):
        if output.get("logits") is not None:
            return cast(torch.Tensor, output["logits"])
        tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
        if tensors:
            return tensors[0]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ValueError(f"the judge returned {type(output).__name__}; expected a tensor of scores")


def _required_positional(module: nn.Module) -> int:
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)


@dataclass
class Judges:
    """The discriminator and the optional classifier, in eval mode on the audit device."""

    discriminator: LoadedModel
    output: Literal["logit", "probability"] = "logit"
    classifier: LoadedModel | None = None
    class_names: list[str] = field(default_factory=list)
    """The classifier's classes (numbered when it names none)."""

    def __post_init__(self) -> None:
        self.conditional_discriminator = _required_positional(self.discriminator.module) >= 2

    def to(self, device: torch.device) -> Judges:
        for loaded in (self.discriminator, self.classifier):
            if loaded is not None:
                loaded.module.to(device).eval()
        return self

    def _call(self, loaded: LoadedModel, x: torch.Tensor, conditions: torch.Tensor | None,
              *, conditional: bool) -> Any:
        if loaded.kind == "hf_image":
            return loaded.module(pixel_values=x)
        if conditional and conditions is not None:
            return loaded.module(x, conditions)
        return loaded.module(x)

    def _judge(self, loaded: LoadedModel, x: torch.Tensor, conditions: torch.Tensor | None, *,
               conditional: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(scores, penultimate features or None) of one batch."""
        seen: list[torch.Tensor] = []
        handles = [m.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().flatten(1)))
                   for m in loaded.module.modules() if isinstance(m, nn.Linear)]
        try:
            scores = _scores(self._call(loaded, x, conditions, conditional=conditional))
        finally:
            for handle in handles:
                handle.remove()
        return scores, (seen[-1] if seen else None)

    @torch.no_grad()
    def score(self, samples: torch.Tensor, sample_shape: tuple[int, ...], conditions: torch.Tensor | None, *,
              batch_size: int, device: torch.device) -> Verdicts:
        """Judges N flattened samples (reshaped to `sample_shape`), `batch_size` at a time."""
        realness, probabilities, features = [], [], []
        features_from = "the classifier's penultimate features" if self.classifier is not None else \
            "the discriminator's penultimate features"
        for start in range(0, len(samples), batch_size):
            x = samples[start:start + batch_size].to(device).reshape(-1, *sample_shape)
            cond = conditions[start:start + batch_size].to(device) if conditions is not None else None
            d_scores, d_features = self._judge(self.discriminator, x, cond, conditional=self.conditional_discriminator)
            d_scores = d_scores.float().reshape(len(x), -1)
            if d_scores.shape[1] != 1:
                raise ValueError(f"the discriminator returned {d_scores.shape[1]} scores per sample; expected one "
                                 "realness score")
            d_scores = d_scores[:, 0]
            realness.append((torch.sigmoid(d_scores) if self.output == "logit" else d_scores).cpu())
            chosen = d_features if d_features is not None else d_scores[:, None]
            if self.classifier is not None:
                c_scores, c_features = self._judge(self.classifier, x, cond, conditional=False)
                logits = c_scores.float().reshape(len(x), -1)
                probabilities.append((torch.softmax(logits, dim=1) if logits.shape[1] > 1 else
                                      torch.cat([1 - torch.sigmoid(logits), torch.sigmoid(logits)], dim=1)).cpu())
                chosen = c_features if c_features is not None else logits
            features.append(chosen.float().cpu())
        if self.output == "probability":
            values = torch.cat(realness)
            if values.numel() and (values.min() < -1e-6 or values.max() > 1 + 1e-6):
                raise ValueError(f"discriminator_output = \"probability\", but the discriminator returned values from "
                                 f"{float(values.min()):.3g} to {float(values.max()):.3g}: set it to \"logit\"")
        return Verdicts(realness=torch.cat(realness).clamp(0, 1).double(),
                        probabilities=torch.cat(probabilities).double() if probabilities else None,
                        features=torch.cat(features).double(), features_from=features_from)


__all__ = ["Judges", "Verdicts"]
