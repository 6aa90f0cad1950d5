"""What every part of a features run shares: the audit context, the samples' inputs, the modules and their outputs."""

from __future__ import annotations


import torch
from torch import nn

from auditor.engine.analysis import AuditContext
from auditor.subject.inputs import TextInputs
from auditor.walk.records import split_call

from auditor.analyses.features.params import FeaturesParams
from auditor.analyses.features.units import run_to, unit_view


class RunBase:
    def __init__(self, params: FeaturesParams, ctx: AuditContext) -> None:
        self.p, self.ctx, self.subject = params, ctx, ctx.subject
        first = next(ctx.subject.batches(ctx.config.batch_size))
        self.keys = list(first.inputs)
        self.inputs = ctx.subject.inputs
        self.key = self.inputs.key
        self._receptive: dict[str, tuple[float, float]] = {}
        self.causal = ctx.subject.task == "causal_lm"
        """A causal language model: units see only the tokens up to their position."""
        self._token_cache: dict[int, list[str]] = {}

    @property
    def _text(self) -> TextInputs:
        """The subject's inputs, where they are text (the token views)."""
        assert isinstance(self.inputs, TextInputs)
        return self.inputs

    def _inputs(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.subject.encode_samples(indices)

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.subject.adapter.forward(self.subject.model, inputs)


    def _module(self, name: str) -> tuple[nn.Module, int]:
        """The module of a visualized name and which of its calls per forward: `pool@2` is call 2 of `pool`."""
        module, call = split_call(name)
        if call is None or module not in self.ctx.capture.calls:
            return self.ctx.tree.get(name), 1
        return self.ctx.tree.get(module), call


    def _maps(self, name: str, indices: list[int]) -> torch.Tensor:
        """(samples, positions, units) of a module's output on some samples."""
        module, call = self._module(name)
        inputs = self._inputs(indices)
        with torch.no_grad():
            out = run_to(module, lambda: self._forward(inputs), call=call)
        return unit_view(out.float().cpu(), module)[0]


    def _unit_label(self, name: str, unit: int) -> str:
        """"unit 12", or the class name for a unit of the head (a class logit)."""
        head = next((b.name for b in self.ctx.blocks if b.kind == "head"), None)
        names = self.subject.class_names
        if name == head and unit < len(names):
            return f"class {names[unit]}"
        return f"unit {unit}"

