"""The MLP neurons of a causal language model: which modules hold them, the tokens a neuron fires on over its
top examples, and the output tokens it promotes directly (its output weight row through the final norm and the
unembedding, the direct path of Elhage et al., 2021; Geva et al., 2022, "Transformer Feed-Forward Layers Build
Predictions by Promoting Concepts in the Vocabulary Space")."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from auditor.engine.analysis import PlanContext
from auditor.kit.lm import direct_logit_effects, lm_layout, mlp_activations, mlp_down_projection


def neuron_modules(ctx: PlanContext, most: int) -> list[str]:
    """The activation module of the MLP of up to `most` evenly spaced layers (GPT-2's `transformer.h.<i>.mlp.act`,
    Llama's `model.layers.<i>.mlp.act_fn`); empty when the model's layers or their activations cannot be read."""
    try:
        layout = lm_layout(ctx.subject.model)
    except ValueError:
        return []
    found = list(mlp_activations(layout, lambda n: ctx.tree.nodes[n].activation, ctx.tree.names).values())
    if len(found) > most:
        picks = np.linspace(0, len(found) - 1, most).round().astype(int)
        found = [found[i] for i in dict.fromkeys(picks.tolist())]
    return found


def fires_on(tokens: list[str]) -> list[tuple[str, int]]:
    """The tokens a neuron peaks on over its top examples (those where it is active), most frequent first (ties in
    first-seen order)."""
    return Counter(t for t in tokens if t).most_common()


def promoted_tokens(model: torch.nn.Module, module: str, width: int, units: list[int], tokenizer: object, *,
                    top: int) -> dict[int, list[tuple[str, float]]] | None:
    """Per unit of the MLP activation `module` (`width` units), up to `top` tokens whose logits its output row raises
    most directly (only those it raises above the vocabulary's mean) (centred logit per unit of activation, the final norm's 1/σ taken as 1); None when the MLP's
    output projection or the unembedding cannot be found. For a gated MLP (Llama) the activation is multiplied by
    its up-projection before the row is read: the tokens are those promoted where that product is positive."""
    try:
        layout = lm_layout(model)
    except ValueError:
        return None
    mlp = next((p.mlp for p in layout.layers if p.mlp and module.startswith(f"{p.mlp}.")), None)
    projection = mlp_down_projection(model, mlp, width) if mlp is not None else None
    if projection is None:
        return None
    with torch.no_grad():
        effects = direct_logit_effects(projection[1][units], model, layout)
    out = {}
    for u, row in zip(units, effects, strict=True):
        values, ids = row.topk(min(4 * top, row.shape[0]))  # ids the tokenizer has no token for are passed over
        names = tokenizer.convert_ids_to_tokens(ids.tolist())  # type: ignore[attr-defined]
        out[u] = [(str(t), float(v)) for t, v in zip(names, values, strict=True) if t is not None and float(v) > 0][:top]
    return out
