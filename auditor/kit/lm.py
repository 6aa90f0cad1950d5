"""What the language-model analyses share: where a causal LM keeps its layers, attention heads, MLPs, final norm
and unembedding (GPT-2, Llama and their kin, by their `named_modules()` names), hooks that read or replace a
head's output, per-text losses, and the repeated-random-token probe of Olsson et al. (2022).

A head's output is its slice of the input to the attention output projection (`c_proj`, `o_proj`); its
contribution to the residual stream is that slice times the projection's rows for it. Heads are named as the
rest of the project names them: `<attention module>#head<h>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from auditor.subject import Subject
from auditor.subject.adapters import AUDIT_MASK
from auditor.walk.records import iter_tensors

_ATTENTION = ("attn", "self_attn", "attention", "self_attention")
_OUT_PROJ = ("c_proj", "o_proj", "out_proj", "dense")
_MLP = ("mlp", "feed_forward", "ffn")
_FINAL_NORM = ("ln_f", "norm", "final_layernorm", "final_norm")


@dataclass(frozen=True)
class LayerParts:
    """One transformer layer's parts, by module name."""

    name: str
    attention: str
    out_proj: str
    mlp: str | None


@dataclass(frozen=True)
class LMLayout:
    """Where a causal language model keeps what the analyses read."""

    layers: tuple[LayerParts, ...]
    heads: int
    head_dim: int
    final_norm: str | None
    unembed: str

    def head_name(self, layer: int, head: int) -> str:
        return f"{self.layers[layer].attention}#head{head}"

    def head_names(self) -> list[str]:
        return [self.head_name(i, h) for i in range(len(self.layers)) for h in range(self.heads)]


def lm_layout(model: nn.Module) -> LMLayout:
    """The layout of a GPT-2- or Llama-shaped causal LM; ValueError when the model has no such parts."""
    names = {id(m): n for n, m in model.named_modules()}
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0
             and all(any(hasattr(layer, a) for a in _ATTENTION) for layer in m)]
    if not lists:
        raise ValueError("no list of transformer layers with an attention module was found")
    list_name, layer_list = max(lists, key=lambda item: len(item[1]))
    config = getattr(model, "config", None)
    heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0) or 0)
    if heads < 1:
        raise ValueError("the model's config names no number of attention heads")
    layers = []
    width = 0
    for i, layer in enumerate(layer_list):
        prefix = f"{list_name}.{i}"
        attn_attr = next(a for a in _ATTENTION if hasattr(layer, a))
        attention = getattr(layer, attn_attr)
        proj_attr = next((p for p in _OUT_PROJ if isinstance(getattr(attention, p, None), nn.Module)), None)
        if proj_attr is None:
            raise ValueError(f"{prefix}.{attn_attr} has no output projection ({', '.join(_OUT_PROJ)})")
        width = _in_features(getattr(attention, proj_attr))
        mlp_attr = next((a for a in _MLP if isinstance(getattr(layer, a, None), nn.Module)), None)
        layers.append(LayerParts(name=prefix, attention=f"{prefix}.{attn_attr}",
                                 out_proj=f"{prefix}.{attn_attr}.{proj_attr}",
                                 mlp=f"{prefix}.{mlp_attr}" if mlp_attr else None))
    if width % heads:
        raise ValueError(f"the attention output projection reads {width} features, not a multiple of {heads} heads")
    get_output = getattr(model, "get_output_embeddings", None)
    unembed_module = get_output() if callable(get_output) else None
    if unembed_module is None or id(unembed_module) not in names:
        raise ValueError("the model has no output embedding (unembedding) module")
    base = getattr(model, "base_model", model)
    base_name = names.get(id(base), "")
    norm_attr = next((a for a in _FINAL_NORM if isinstance(getattr(base, a, None), nn.Module)), None)
    final_norm = (f"{base_name}.{norm_attr}" if base_name else norm_attr) if norm_attr else None
    return LMLayout(layers=tuple(layers), heads=heads, head_dim=width // heads, final_norm=final_norm,
                    unembed=names[id(unembed_module)])


def _in_features(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return int(module.in_features)
    weight = getattr(module, "weight", None)  # transformers' Conv1D: weight (in, out)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    raise ValueError(f"cannot read the input width of {type(module).__name__}")


def unembedding_weight(model: nn.Module, layout: LMLayout) -> torch.Tensor:
    """(vocab, d_model): the unembedding's weight."""
    weight = model.get_submodule(layout.unembed).weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach()


def projection_rows(module: nn.Module, head: int, head_dim: int) -> torch.Tensor:
    """(head_dim, d_model): what the output projection makes of head `head`'s slice (bias left out)."""
    part = slice(head * head_dim, (head + 1) * head_dim)
    if isinstance(module, nn.Linear):
        return module.weight[:, part].T
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight[part, :]  # transformers' Conv1D: x @ weight + bias


def value_slice(model: nn.Module, layout: LMLayout, layer: int, head: int) -> tuple[str, slice] | None:
    """Where head `head` of layer `layer` keeps its value vectors: (module, slice of its output's last dimension),
    GPT-2's fused `c_attn` (query, key, value) or a separate `v_proj` with one value head per query head; None
    elsewhere (grouped-query attention shares a value head between query heads). Every row of a causal attention
    pattern sums to one, so a head whose values are all one vector v outputs v at every position: replacing the
    values by a constant ablates the head as replacing its slice of the output projection's input does."""
    attention = model.get_submodule(layout.layers[layer].attention)
    d, width = layout.head_dim, layout.heads * layout.head_dim
    fused = getattr(attention, "c_attn", None)
    if fused is not None and _out_features(fused) == 3 * width:
        return f"{layout.layers[layer].attention}.c_attn", slice(2 * width + head * d, 2 * width + (head + 1) * d)
    values = getattr(attention, "v_proj", None)
    if values is not None and _out_features(values) == width:
        return f"{layout.layers[layer].attention}.v_proj", slice(head * d, (head + 1) * d)
    return None


def _out_features(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    weight = getattr(module, "weight", None)  # transformers' Conv1D: weight (in, out)
    return int(weight.shape[1]) if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None


@contextmanager
def hooks(model: nn.Module, forward: Sequence[tuple[str, Callable[..., Any]]] = (),
          pre: Sequence[tuple[str, Callable[..., Any]]] = ()) -> Iterator[None]:
    """Forward hooks and forward pre-hooks on named modules, removed when the block ends, also on an error."""
    handles = []
    try:
        for name, fn in forward:
            handles.append(model.get_submodule(name).register_forward_hook(fn))
        for name, fn in pre:
            handles.append(model.get_submodule(name).register_forward_pre_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def first_tensor(output: Any) -> torch.Tensor:
    """A module's main output: the tensor itself, or the first of a tuple (attention returns (out, weights))."""
    return next(iter_tensors(output))


def replace_first(output: Any, value: torch.Tensor) -> Any:
    """`output` with its main tensor replaced (a tuple keeps its other members)."""
    if isinstance(output, torch.Tensor):
        return value
    if isinstance(output, tuple):
        return (value, *output[1:])
    raise TypeError(f"cannot replace the output of type {type(output).__name__}")


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Attention computed by the plain implementation, which can return its patterns; restored after."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    setter = getattr(model, "set_attn_implementation", None)
    if before in (None, "eager") or setter is None:
        yield
        return
    setter("eager")
    try:
        yield
    finally:
        setter(before)


def attention_patterns(model: nn.Module, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """Per layer, (batch, heads, query, key) attention probabilities on `input_ids` (no padding)."""
    with torch.no_grad(), eager_attention(model):
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), output_attentions=True,
                    use_cache=False)
    patterns = getattr(out, "attentions", None)
    if not patterns:
        raise ValueError("the model returned no attention patterns (output_attentions)")
    return [p.detach().float() for p in patterns]


def repeated_random_tokens(vocab: int, *, length: int, samples: int, seed: int, bos: int | None,
                           low: int = 0) -> torch.Tensor:
    """(samples, [1 +] 2*length) token ids: a BOS token when there is one, then `length` uniform random tokens
    (drawn from [low, vocab) with numpy's portable generator; distinct within a row when the vocabulary allows,
    so that only the repeat repeats) repeated once: the probe of Olsson et al. (2022)."""
    rng = np.random.default_rng(seed)
    if vocab - low >= length:
        rows = [rng.choice(np.arange(low, vocab), size=length, replace=False) for _ in range(samples)]
        segment = torch.from_numpy(np.stack(rows)).long()
    else:
        segment = torch.from_numpy(rng.integers(low, vocab, size=(samples, length))).long()
    parts = [segment, segment]
    if bos is not None:
        parts.insert(0, torch.full((samples, 1), bos, dtype=torch.long))
    return torch.cat(parts, dim=1)


def text_losses(subject: Subject, scores: torch.Tensor) -> torch.Tensor:
    """(texts,) mean loss over each text's audited tokens (NaN for a text with none), float64."""
    losses = scores.double()
    audited = ~torch.isnan(losses)
    total = torch.where(audited, losses, torch.zeros_like(losses)).sum(dim=1)
    count = audited.sum(dim=1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def seen_before(input_ids: torch.Tensor, width: int) -> torch.Tensor:
    """(batch, width) bool, aligned with next-token scores: column j is True when token j+1 already occurred
    earlier in its text (a repeat the context can predict), False for a first occurrence."""
    ids = input_ids[:, 1:]
    earlier = input_ids.unsqueeze(1) == ids.unsqueeze(2)  # (batch, j, key): token j+1 equals token key
    keys = torch.arange(input_ids.shape[1], device=input_ids.device)
    before = keys.unsqueeze(0) <= torch.arange(ids.shape[1], device=input_ids.device).unsqueeze(1)
    seen = (earlier & before.unsqueeze(0)).any(dim=2)
    if seen.shape[1] >= width:
        return seen[:, :width]
    return torch.nn.functional.pad(seen, (0, width - seen.shape[1]), value=False)


def lm_batches(subject: Subject, batch_size: int) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """(start, inputs) of every batch of the audit data, the audit mask included."""
    for batch in subject.batches(batch_size):
        yield batch.start, batch.inputs


def audited_positions(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """(batch, tokens) bool: the positions whose next token is audited (aligned with the logits, not the ids)."""
    mask = inputs[AUDIT_MASK]
    out = torch.zeros_like(mask)
    out[:, :-1] = mask[:, 1:]
    return out


def bootstrap_interval(values: np.ndarray, *, seed: int, resamples: int = 1000,
                       level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of `values` (Efron & Tibshirani, 1993)."""
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


__all__ = ["LMLayout", "LayerParts", "attention_patterns", "audited_positions", "bootstrap_interval", "calibration",
           "eager_attention", "first_tensor", "frozen_norm", "hooks", "lm_batches", "lm_layout", "mlp_activations",
           "mlp_width", "projection_rows",
           "unembedding_weight", "repeated_random_tokens", "replace_first", "seen_before", "text_losses", "value_slice"]


def calibration(confidence: np.ndarray, correct: np.ndarray, *, bins: int) -> tuple[float, list[tuple[float, float, int]]]:
    """Expected calibration error over equal-width confidence bins (Guo et al., 2017), and (mean confidence,
    accuracy, count) per non-empty bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        mask = which == b
        if mask.any():
            conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
            ece += float(mask.mean()) * abs(conf - acc)
            table.append((conf, acc, int(mask.sum())))
    return ece, table


def frozen_norm(component: torch.Tensor, final_input: torch.Tensor, norm: nn.Module | None) -> torch.Tensor:
    """What the final norm makes of one additive part of the residual stream, with the norm's scale frozen at
    its value on the whole stream (`final_input`): the linearization direct logit attribution and the logit lens
    use (nostalgebraist, 2020; Elhage et al., 2021). LayerNorm centres the part; RMSNorm only scales it. The
    norm's bias belongs to no part."""
    if norm is None:
        return component
    weight = getattr(norm, "weight", None)
    eps = float(getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None) or 1e-5)
    x = final_input.double()
    if isinstance(norm, nn.LayerNorm):
        scale = torch.sqrt(x.var(dim=-1, unbiased=False, keepdim=True) + eps)
        out = (component.double() - component.double().mean(dim=-1, keepdim=True)) / scale
    else:
        out = component.double() / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    if isinstance(weight, torch.Tensor):
        out = out * weight.double()
    return out


def mlp_down_projection(model: nn.Module, mlp: str, units: int) -> tuple[str, torch.Tensor] | None:
    """The MLP's output projection (GPT-2's `c_proj`, Llama's `down_proj`): its name and (units, d_model) weight,
    row u what one unit of activation adds to the residual stream (bias left out); None when no child of the MLP
    maps `units` features to another width."""
    module = model.get_submodule(mlp)
    for name, child in module.named_children():
        weight = getattr(child, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        if isinstance(child, nn.Linear) and child.in_features == units and child.out_features != units:
            return f"{mlp}.{name}", weight.detach().T
        if not isinstance(child, nn.Linear) and weight.shape[0] == units and weight.shape[1] != units:
            return f"{mlp}.{name}", weight.detach()  # transformers' Conv1D: x @ weight
    return None


def direct_logit_effects(vectors: torch.Tensor, model: nn.Module, layout: LMLayout) -> torch.Tensor:
    """(n, vocab): what each of `vectors` (n, d_model), added to the residual stream, adds to every logit through
    the final norm and the unembedding, centred over the vocabulary. The norm's scale 1/σ depends on the whole
    stream and is taken as 1 (a positive factor per token: it changes no ranking of tokens); LayerNorm's centring
    and the norm's weight apply, its bias belongs to no vector."""
    norm = model.get_submodule(layout.final_norm) if layout.final_norm else None
    x = vectors.double()
    if isinstance(norm, nn.LayerNorm):
        x = x - x.mean(dim=-1, keepdim=True)
    weight = getattr(norm, "weight", None) if norm is not None else None
    if isinstance(weight, torch.Tensor):
        x = x * weight.detach().double()
    w_u = unembedding_weight(model, layout).double()
    logits = x @ w_u.T
    return logits - logits.mean(dim=-1, keepdim=True)


def mlp_activations(layout: LMLayout, is_activation: Callable[[str], bool], names: Sequence[str]) -> dict[int, str]:
    """Per layer index, the activation module inside its MLP (GPT-2's `transformer.h.<i>.mlp.act`, Llama's
    `model.layers.<i>.mlp.act_fn`): its output's units are the layer's MLP neurons. `names` are the model's module
    names, `is_activation` says which are activations (the module tree's flag)."""
    found = {}
    for i, part in enumerate(layout.layers):
        if part.mlp is None:
            continue
        act = next((n for n in names if n.startswith(f"{part.mlp}.") and is_activation(n)), None)
        if act is not None:
            found[i] = act
    return found


_DOWN_PROJ = ("c_proj", "down_proj", "fc_out", "fc2", "dense_4h_to_h")


def mlp_width(model: nn.Module, mlp: str) -> int | None:
    """How many neurons the MLP `mlp` has: the input width of its output projection (GPT-2's `c_proj`, Llama's
    `down_proj`, ...); None when it has none of those."""
    module = model.get_submodule(mlp)
    child = next((getattr(module, n) for n in _DOWN_PROJ if isinstance(getattr(module, n, None), nn.Module)), None)
    if child is None:
        return None
    try:
        return _in_features(child)
    except ValueError:
        return None
