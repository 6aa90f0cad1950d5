"""What the language-model ablation ablates (layers, attention modules, heads, MLPs, MLP neurons) and the means it
replaces them with."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from auditor.analyses.lm_ablation.params import Kind, LMAblationParams
from auditor.engine.analysis import PlanContext
from auditor.errors import ConfigError
from auditor.kit.lm import LMLayout, mlp_activations, mlp_width


@dataclass(frozen=True)
class LMTarget:
    name: str
    kind: Kind
    forward: tuple[str, ...] = ()
    """Modules whose whole output is replaced."""
    head: tuple[str, int] | None = None
    """(output projection, head index): the head's slice of the projection's input is replaced."""
    unit: tuple[str, int] | None = None
    """(MLP activation, neuron index): that neuron's activation is replaced."""
    layer: int = 0


def neuron_layers(model: nn.Module, layout: LMLayout, params: LMAblationParams, ctx: PlanContext
                  ) -> dict[int, tuple[str, int]]:
    """Per layer of `params.neurons`, its MLP activation module and its number of neurons; ValueError for a layer
    the model does not have or whose MLP neurons cannot be found."""
    if not params.neurons:
        return {}
    acts = mlp_activations(layout, lambda n: ctx.tree.nodes[n].activation, ctx.tree.names)
    out = {}
    for i in params.neurons:
        part = layout.layers[i] if 0 <= i < len(layout.layers) else None
        width = mlp_width(model, part.mlp) if part is not None and part.mlp else None
        if part is None or i not in acts or width is None:
            raise ConfigError(f"[analyses.lm_ablation] neurons: layer {i} has no MLP neurons to ablate (the model "
                              f"has {len(layout.layers)} layers; an MLP with an activation module and an output "
                              "projection is needed)")
        out[i] = (acts[i], width)
    return out


def lm_targets(layout: LMLayout, params: LMAblationParams,
               neurons: dict[int, tuple[str, int]] | None = None) -> list[LMTarget]:
    """Every target, in model order: the layer, its attention, its heads, its MLP, its MLP's neurons."""
    neurons = neurons or {}
    targets: list[LMTarget] = []
    for i, part in enumerate(layout.layers):
        branches = (part.attention, *([part.mlp] if part.mlp else []))
        if params.layers:
            targets.append(LMTarget(part.name, "layer", forward=branches, layer=i))
        if params.attention:
            targets.append(LMTarget(part.attention, "attention", forward=(part.attention,), layer=i))
        if params.heads and layout.heads > 1:
            targets.extend(LMTarget(f"{part.attention}#head{h}", "head", head=(part.out_proj, h), layer=i)
                           for h in range(layout.heads))
        if params.mlps and part.mlp:
            targets.append(LMTarget(part.mlp, "mlp", forward=(part.mlp,), layer=i))
        if i in neurons:
            act, width = neurons[i]
            targets.extend(LMTarget(f"{act}#{u}", "neuron", unit=(act, u), layer=i) for u in range(width))
    return targets


def fill_slice(output: torch.Tensor, *, part: slice, fill: torch.Tensor) -> torch.Tensor:
    """`output` with its last dimension's `part` set to `fill` at every position."""
    out = output.clone()
    out[..., part] = fill.to(out.dtype)
    return out


class Means:
    """Per module, the mean of its main output (or, for an output projection, of its input) over audited tokens."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor, mask: torch.Tensor) -> None:
        picked = value.detach()[mask[:, :value.shape[1]]].double()
        self.sums[name] = self.sums.get(name, 0) + picked.sum(dim=0)
        self.counts[name] = self.counts.get(name, 0) + int(picked.shape[0])

    def mean(self, name: str) -> torch.Tensor:
        return self.sums[name] / max(1, self.counts[name])
