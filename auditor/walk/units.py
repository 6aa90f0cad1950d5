"""Which units that are zero on every audit sample are dead, which are pruned, and which are structural.

A unit is *dead* where it is made zero: at the output of an activation module that received something
other than zeros for it, or of a layer with parameters whose weights for the unit are not all zero.
A unit whose weights are all zero is *pruned*. Zeros that a parameter-free module which is not an
activation produces or passes on (channel zero-padding in an option-A shortcut, pooling, dropout, a
container returning its child's output) are structural, or were already counted where they were made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from auditor.walk.records import ModuleRecord
from auditor.walk.tree import ModuleNode

# Layers whose weight holds the output units in dimension 1 instead of 0.
_UNITS_IN_DIM_1 = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class ZeroUnits:
    """How many units were zero on every sample, and why."""

    zero: int
    """All of them, whatever the cause."""
    dead: int
    """Made zero by this module: an activation, or a layer whose weights for the unit are not all zero."""
    pruned: int
    """Zero because this layer's weights for the unit are all zero."""


def zero_weight_units(module: nn.Module, units: int) -> torch.Tensor | None:
    """Per output unit: are all of the module's weights for it zero (None: the layout is not known)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() == 0:
        return None
    # transformers' Conv1D (GPT-2) stores (in, out), like a transposed convolution.
    by_column = isinstance(module, _UNITS_IN_DIM_1) or type(module).__name__ == "Conv1D"
    if by_column and getattr(module, "groups", 1) != 1:
        return None
    dim = 1 if by_column else 0
    if weight.dim() <= dim or weight.shape[dim] != units:
        return None
    return weight.detach().movedim(dim, 0).reshape(units, -1).eq(0).all(dim=1).cpu()


def classify_zero_units(node: ModuleNode, module: nn.Module, records: dict[str, ModuleRecord], *,
                        record: ModuleRecord | None = None) -> ZeroUnits | None:
    """Sorts the units of `node` that were zero on every sample into dead, pruned and the rest.

    `record`: what to classify instead of the module's own record (one call of a reused module).
    """
    record = record if record is not None else records.get(node.name)
    mask = record.stats.zero_mask if record is not None else None
    if record is None or mask is None:
        return None
    zero = int(mask.sum())
    if zero == 0:
        return ZeroUnits(0, 0, 0)
    if node.activation:
        made_here = mask & ~_zero_inputs(record, records, len(mask))
        return ZeroUnits(zero, int(made_here.sum()), 0)
    if node.own_params:
        pruned = zero_weight_units(module, len(mask))
        pruned = mask & pruned if pruned is not None else torch.zeros_like(mask)
        return ZeroUnits(zero, int((mask & ~pruned).sum()), int(pruned.sum()))
    return ZeroUnits(zero, 0, 0)


def _zero_inputs(record: ModuleRecord, records: dict[str, ModuleRecord], units: int) -> torch.Tensor:
    """Per unit: was the activation's input already zero on every sample (in every call). A source that is
    itself called several times per forward is read at the call that fed this one."""
    inherited = torch.ones(units, dtype=torch.bool)
    sources = {s for c in record.per_call for s in c.input_sources}
    if not sources:
        return ~inherited
    for source in sources:
        source_mask = None
        if source is not None and source[0] in records:
            fed_by = records[source[0]]
            if fed_by.reused and source[1] <= len(fed_by.per_call):
                fed_by = fed_by.of_call(source[1])
            source_mask = fed_by.stats.zero_mask
        if source_mask is None or len(source_mask) != units:
            return ~inherited  # an input of unknown origin: every zero counts as made here
        inherited &= source_mask
    return inherited
