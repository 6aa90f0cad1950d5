"""The same architecture with fresh weights: the random-network baseline of the probes.

A property that a linear probe reads as well from a randomly initialized network as from the trained one
lives in the input or in the architecture, not in what training taught (Zhang & Bowman, 2018, "Language
Modeling Teaches You More than Translation Does"; Hewitt & Liang, 2019). The fresh weights follow the
model's own initialization: a Hugging Face model's (`initializer_range`: normal weights, zero biases, unit
norms), otherwise each torch layer's `reset_parameters`. They are returned as data, for `patch`, so the
user's model is re-initialized only for the length of one pass and restored bit for bit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d,
          nn.InstanceNorm2d, nn.InstanceNorm3d)
_HF_NORMAL = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Embedding)


@dataclass(frozen=True)
class FreshWeights:
    """New values for the model's floating-point parameters and norm statistics, by full dotted name."""

    weights: dict[str, torch.Tensor]
    scheme: str
    """How they were drawn, in words, for the report."""
    kept_scale: list[str]
    """Parameters no initializer is known for, drawn as N(0, σ of the trained tensor) instead."""


def _hf_std(model: nn.Module) -> dict[str, float]:
    """For each module inside a Hugging Face model, the std of its normal initialization."""
    stds: dict[str, float] = {}
    for name, module in model.named_modules():
        config = getattr(module, "config", None)
        std = getattr(config, "initializer_range", None) if config is not None else None
        if isinstance(std, (int, float)) and hasattr(module, "base_model_prefix"):
            prefix = f"{name}." if name else ""
            for inner, _ in module.named_modules():
                stds.setdefault(f"{prefix}{inner}" if inner else name, float(std))
    return stds


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORMS) or "Norm" in type(module).__name__


def fresh_weights(model: nn.Module, *, seed: int) -> FreshWeights:
    """Draws a re-initialization of every floating-point parameter (and norm running statistics) of `model`,
    seeded, without touching the model or the caller's random state."""
    hf = _hf_std(model)
    new: dict[str, torch.Tensor] = {}
    kept: list[str] = []
    schemes: set[str] = set()
    seen: set[int] = set()  # a tied parameter (a language model's unembedding is its embedding) is drawn once
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for module_name, module in model.named_modules():
            own = {n: p for n, p in module.named_parameters(recurse=False) if p.is_floating_point()
                   and id(p) not in seen}
            seen.update(id(p) for p in own.values())
            stats = {n: b for n, b in module.named_buffers(recurse=False)
                     if b is not None and b.is_floating_point() and n in ("running_mean", "running_var")}
            if not own and not stats:
                continue
            prefix = f"{module_name}." if module_name else ""
            values = _draw(module, own, stats, hf.get(module_name))
            if values is None:
                for n, p in own.items():  # an unknown layer: fresh values on the trained tensor's scale
                    values_std = float(p.float().std()) if p.numel() > 1 else 0.0
                    new[prefix + n] = torch.randn_like(p) * values_std
                    kept.append(prefix + n)
                continue
            schemes.add("Hugging Face initializer" if module_name in hf else "torch reset_parameters")
            for n, tensor in values.items():
                new[prefix + n] = tensor
    scheme = " and ".join(sorted(schemes)) or "no known initializer"
    return FreshWeights(weights=new, scheme=scheme, kept_scale=kept)


def _draw(module: nn.Module, own: dict[str, torch.Tensor], stats: dict[str, torch.Tensor],
          hf_std: float | None) -> dict[str, torch.Tensor] | None:
    """Fresh values of one module's own parameters and statistics, or None when no initializer is known."""
    if hf_std is not None:
        if _is_norm(module):
            out = {n: (torch.ones_like(p) if n == "weight" else torch.zeros_like(p)) for n, p in own.items()}
        elif isinstance(module, _HF_NORMAL):
            out = {n: (torch.randn_like(p) * hf_std if n == "weight" else torch.zeros_like(p)) for n, p in own.items()}
            padding = getattr(module, "padding_idx", None)
            if isinstance(module, nn.Embedding) and padding is not None and "weight" in out:
                out["weight"][padding] = 0.0
        else:  # a model's own parameters (a class token, position tables): its normal init
            out = {n: torch.randn_like(p) * hf_std for n, p in own.items()}
        out.update({n: (torch.ones_like(b) if n == "running_var" else torch.zeros_like(b)) for n, b in stats.items()})
        return out
    if not hasattr(module, "reset_parameters"):
        return None
    clone = copy.copy(module)  # shallow: own tensors are replaced below, children are left alone
    clone._parameters = {n: nn.Parameter(p.detach().clone(), requires_grad=False) if p is not None else None
                         for n, p in module._parameters.items()}
    clone._buffers = {n: b.detach().clone() if b is not None else None for n, b in module._buffers.items()}
    clone._modules = {}
    try:
        reset: Any = clone.reset_parameters
        reset()
    except Exception:  # a reset that needs its children (or fails): treat the layer as unknown
        return None
    fresh: dict[str, torch.Tensor] = {n: p for n, p in clone._parameters.items() if p is not None and n in own}
    fresh.update({n: b for n, b in clone._buffers.items() if b is not None and n in stats})
    return {n: t.detach() for n, t in fresh.items()}


__all__ = ["FreshWeights", "fresh_weights"]
