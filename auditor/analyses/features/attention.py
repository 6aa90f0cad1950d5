"""Attention heads of Hugging Face transformers: their patterns, average distance and entropy.

Fused attention kernels (SDPA, flash) never form the attention matrix, so the pass that reads it runs with
eager attention, switched on for the length of a `with` block and switched back after it, also when the
forward raises. The matrices come from the self-attention modules' outputs ((output, weights) in
transformers 5), read by a forward hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from auditor.walk.records import iter_tensors


def _hf_models(model: nn.Module) -> list[nn.Module]:
    """The outermost Hugging Face models inside `model` (the model itself, or an encoder it wraps)."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        inside = any(name.startswith(f"{outer}.") or outer == "" for outer, _ in found)
        if not inside and hasattr(module, "set_attn_implementation") and hasattr(module, "config"):
            found.append((name, module))
    return [m for _, m in found]


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[bool]:
    """Switches every Hugging Face model inside `model` to eager attention; yields whether there is one."""
    models = _hf_models(model)
    with ExitStack() as stack:
        for hf in models:
            before = getattr(hf.config, "_attn_implementation", None)
            switch = getattr(hf, "set_attn_implementation")  # noqa: B009  (a Hugging Face method, untyped here)
            if before not in (None, "eager"):
                switch("eager")
                stack.callback(switch, before)
        yield bool(models)


@contextmanager
def attention_hooks(modules: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Keeps the attention probabilities (batch, heads, queries, keys) each module returns."""
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str, module: nn.Module, args: Any, output: Any) -> None:
        for t in iter_tensors(output):
            if t.dim() == 4 and t.shape[-1] == t.shape[-2] and t.is_floating_point():
                kept[name] = t.detach().float().cpu()
                return

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: keep(name, m, a, o)))
        yield kept
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class HeadStats:
    """Per head of one layer, over the valid query positions of the samples read."""

    distance: list[float]
    """Mean |query - key| in tokens, weighted by attention."""
    entropy: list[float]
    """Mean entropy of a query's attention (nats); log(keys) is uniform attention."""
    first_token: list[float]
    """Mean attention to the first token ([CLS])."""


def head_stats(attention: torch.Tensor, mask: torch.Tensor | None) -> HeadStats:
    """Statistics of (batch, heads, queries, keys) attention; `mask` (batch, tokens) marks real tokens."""
    batch, heads, q, k = attention.shape
    a = attention.double()
    valid = mask.bool() if mask is not None else torch.ones(batch, q, dtype=torch.bool)
    weight = valid[:, None, :].expand(batch, heads, q).double()  # (batch, heads, queries)
    span = (torch.arange(q)[:, None] - torch.arange(k)[None, :]).abs().double()
    distance = (a * span).sum(dim=-1)
    entropy = -(a * a.clamp_min(1e-12).log()).sum(dim=-1)
    first = a[..., 0]
    total = weight.sum(dim=(0, 2)).clamp_min(1.0)

    def mean(x: torch.Tensor) -> list[float]:
        return [round(float(v), 6) for v in (x * weight).sum(dim=(0, 2)) / total]

    return HeadStats(distance=mean(distance), entropy=mean(entropy), first_token=mean(first))
