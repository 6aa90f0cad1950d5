"""Attention heads: how many each self-attention layer has, and which modules' outputs split into them."""

from __future__ import annotations

from torch import nn

from auditor.walk.tree import ModuleTree


def attention_heads(model: nn.Module, tree: ModuleTree) -> tuple[int, frozenset[str]]:
    """(heads per layer, the self-attention modules whose output splits into heads), from the model config."""
    heads = int(getattr(getattr(model, "config", None), "num_attention_heads", 0) or 0)
    if not heads:
        for module in model.modules():  # an encoder wrapped by a head (EncoderClassifier)
            heads = int(getattr(getattr(module, "config", None), "num_attention_heads", 0) or 0)
            if heads:
                break
    names = frozenset(n for n, m in tree.modules() if type(m).__name__.endswith("SelfAttention")) if heads \
        else frozenset()
    return heads, names
