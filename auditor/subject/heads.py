"""A bare encoder plus a linear head on its pooled output: how `--head` and the MiniLM demo classify."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from safetensors import safe_open
from torch import nn

from auditor.errors import ModelLoadError


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """(batch, tokens, hidden) -> (batch, hidden): mask-aware mean, or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class EncoderClassifier(nn.Module):
    """`encoder` (a Hugging Face base model) -> pooled hidden state -> `head` (nn.Linear) -> logits."""

    def __init__(self, encoder: nn.Module, head: nn.Linear, *, pooling: str = "mean",
                 class_names: list[str] | None = None) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        self.encoder = encoder
        self.head = head
        self.pooling = pooling
        self.class_names = list(class_names or [])

    def forward(self, **inputs: Any) -> torch.Tensor:
        out = self.encoder(**inputs)
        hidden = out["last_hidden_state"] if isinstance(out, dict) or hasattr(out, "keys") else out[0]
        return cast(torch.Tensor, self.head(pool_hidden(hidden, inputs.get("attention_mask"), self.pooling)))


def load_linear_head(path: str | Path, *, hidden_size: int) -> tuple[nn.Linear, str, list[str]]:
    """Reads a head saved as safetensors (`weight` (classes, hidden), `bias` (classes)).

    Metadata keys, optional: `pooling` ("mean" or "cls"), `labels` (comma-separated class names).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"head file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            meta = f.metadata() or {}
            if not {"weight", "bias"} <= keys:
                raise ModelLoadError(f"head {path} must hold tensors 'weight' and 'bias'; it has {sorted(keys)}")
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    except ModelLoadError:
        raise
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ModelLoadError(f"head {path} is not a readable safetensors file: {err}") from None
    if weight.dim() != 2 or weight.shape[1] != hidden_size or bias.shape != (weight.shape[0],):
        raise ModelLoadError(
            f"head {path} has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}; "
            f"expected (classes, {hidden_size}) and (classes,)"
        )
    head = nn.Linear(hidden_size, weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    labels = [s.strip() for s in meta.get("labels", "").split(",") if s.strip()]
    return head, meta.get("pooling", "mean"), labels
