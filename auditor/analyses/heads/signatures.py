"""Attention-head signatures measured on repeated random tokens (Olsson et al., 2022, "In-context learning
and induction heads"; Elhage et al., 2021, "A Mathematical Framework for Transformer Circuits").

The probe: a BOS token (when the tokenizer has one), `length` uniform random tokens, the same tokens again.
For a query at position q:
- previous-token score: attention from q to q-1, averaged over every query but the first;
- duplicate-token score: attention from a second-half token to its earlier copy (q - length);
- prefix-matching (induction) score: attention from a second-half token to the token after its earlier copy
  (q - length + 1), the token an induction head predicts; TransformerLens's `induction_score` is this
  stripe of the pattern;
- copying score: how often the head's own output, through the final norm (its scale frozen) and the
  unembedding, ranks the token it attends to most among the top 5% of the vocabulary (chance: 0.05).
A head "reads" an earlier previous-token head when mean-ablating that head on the probe lowers its
prefix-matching score: the K-composition of an induction circuit, measured rather than read off the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from auditor.kit.lm import (
    LMLayout,
    attention_patterns,
    frozen_norm,
    hooks,
    projection_rows,
    repeated_random_tokens,
    unembedding_weight,
)


COPYING_SAMPLES = 8
"""Probes the copying score reads (its product with the whole unembedding is the probe's largest cost)."""


@dataclass
class Signatures:
    """Per head name, its scores on the probe; and per induction head, what ablating earlier heads does."""

    previous_token: dict[str, float] = field(default_factory=dict)
    duplicate_token: dict[str, float] = field(default_factory=dict)
    induction: dict[str, float] = field(default_factory=dict)
    copying: dict[str, float] = field(default_factory=dict)
    reads: dict[str, dict[str, float]] = field(default_factory=dict)
    """induction head -> {earlier head: its prefix-matching score with that head mean-ablated}."""
    samples: int = 0
    length: int = 0


def probe_tokens(model: nn.Module, tokenizer: Any, *, length: int, samples: int, seed: int) -> tuple[torch.Tensor, int]:
    """The probe's token ids, and the offset of the first random token (1 with a BOS token, else 0). Random
    tokens avoid the tokenizer's special tokens where the vocabulary allows."""
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0)
    if vocab < 2:
        raise ValueError("the model's config names no vocabulary size")
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    if bos is None:
        bos = getattr(model.config, "bos_token_id", None)
    if bos is not None and not 0 <= int(bos) < vocab:
        bos = None
    special = [int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []) if 0 <= int(i) < vocab]
    low = max(special) + 1 if special and max(special) < vocab // 2 else 0
    ids = repeated_random_tokens(vocab, length=length, samples=samples, seed=seed, bos=bos, low=low)
    return ids, 0 if bos is None else 1


def _scores(patterns: list[torch.Tensor], offset: int, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(layers, heads) previous-token, duplicate-token and prefix-matching scores."""
    total = patterns[0].shape[-1]
    q = torch.arange(1, total)
    second = torch.arange(offset + length, offset + 2 * length)
    prev = torch.stack([p[:, :, q, q - 1].mean(dim=(0, 2)) for p in patterns])
    dup = torch.stack([p[:, :, second, second - length].mean(dim=(0, 2)) for p in patterns])
    ind = torch.stack([p[:, :, second, second - length + 1].mean(dim=(0, 2)) for p in patterns])
    return prev, dup, ind


def measure(model: nn.Module, layout: LMLayout, tokenizer: Any, *, length: int, samples: int, seed: int,
            previous_threshold: float, induction_threshold: float) -> Signatures:
    """Every head's signature on the probe, and for each head past the induction threshold, how its
    prefix-matching score falls when each earlier head past the previous-token threshold is mean-ablated."""
    ids, offset = probe_tokens(model, tokenizer, length=length, samples=samples, seed=seed)
    ids = ids.to(next(model.parameters()).device)
    head_inputs: dict[int, torch.Tensor] = {}
    final_in: list[torch.Tensor] = []

    def keep_input(layer: int) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            head_inputs[layer] = args[0].detach()
        return hook

    def keep_final(module: nn.Module, args: tuple[Any, ...]) -> None:
        final_in.append(args[0].detach())

    pre = [(part.out_proj, keep_input(i)) for i, part in enumerate(layout.layers)]
    if layout.final_norm:
        pre.append((layout.final_norm, keep_final))
    with hooks(model, pre=pre):
        patterns = attention_patterns(model, ids)
    prev, dup, ind = _scores(patterns, offset, length)
    sig = Signatures(samples=samples, length=length)
    norm = model.get_submodule(layout.final_norm) if layout.final_norm else None
    unembed = unembedding_weight(model, layout).float()  # (vocab, d_model)
    d = layout.head_dim
    with torch.no_grad():
        for i, part in enumerate(layout.layers):
            proj = model.get_submodule(part.out_proj)
            for h in range(layout.heads):
                name = layout.head_name(i, h)
                sig.previous_token[name] = float(prev[i, h])
                sig.duplicate_token[name] = float(dup[i, h])
                sig.induction[name] = float(ind[i, h])
                # copying on the second half's queries of the first COPYING_SAMPLES probes: a vocabulary-wide
                # product per head (GPT-2's 50,257 logits x 144 heads) is the probe's largest cost
                rows, queries = slice(0, COPYING_SAMPLES), slice(offset + length, offset + 2 * length)
                x = head_inputs[i][rows, queries, h * d:(h + 1) * d].float()
                out = x @ projection_rows(proj, h, d).detach().float()
                stream = final_in[0][rows, queries] if final_in else out  # no final norm: nothing to freeze
                direct = frozen_norm(out, stream, norm).float() @ unembed.T  # (n, queries, vocab)
                keys = patterns[i][rows, h, queries].argmax(dim=-1)
                attended = ids[rows].gather(1, keys)  # the token each query attends to most
                mine = direct.gather(2, attended.unsqueeze(2))
                rank = (direct < mine).float().sum(dim=2) / max(1, direct.shape[2] - 1)  # share of the others below
                sig.copying[name] = float((rank >= 0.95).double().mean())
    for i in range(len(layout.layers)):
        for h in range(layout.heads):
            name = layout.head_name(i, h)
            if sig.induction[name] < induction_threshold:
                continue
            sig.reads[name] = {}
            for j in range(i):
                for g in range(layout.heads):
                    earlier = layout.head_name(j, g)
                    if sig.previous_token[earlier] < previous_threshold:
                        continue
                    mean = head_inputs[j][..., g * d:(g + 1) * d].mean(dim=(0, 1))
                    after = _ablated_patterns(model, ids, layout.layers[j].out_proj, slice(g * d, (g + 1) * d), mean)
                    sig.reads[name][earlier] = float(_scores(after, offset, length)[2][i, h])
    return sig


def _ablated_patterns(model: nn.Module, ids: torch.Tensor, out_proj: str, part: slice,
                      mean: torch.Tensor) -> list[torch.Tensor]:
    def replace(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0].clone()
        x[..., part] = mean
        return (x, *args[1:])

    with hooks(model, pre=[(out_proj, replace)]):
        return attention_patterns(model, ids)


__all__ = ["Signatures", "measure", "probe_tokens"]
