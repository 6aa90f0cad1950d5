"""What every check of the trust analysis starts from: the samples, their inputs and baselines, the
explainers set up on the model."""


from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from auditor.kit.captum import Baseline, internal_batch_size
from auditor.engine.analysis import Analysis, AuditContext
from auditor.analyses.trust.explainers import Explainer, ExplainSpec, explain

from auditor.analyses.trust.params import TrustParams


def last_parts(name: str) -> str:
    """The last two parts of a dotted module name, or "model" for the model itself."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else (name or "model")


class TrustRunBase:
    def __init__(self, analysis: Analysis, params: TrustParams, explainers: Callable[[bool], dict[str, Explainer]],
                 ctx: AuditContext) -> None:
        self.analysis, self.ctx, self.p = analysis, ctx, params
        self.subject = ctx.subject
        self.inputs = self.subject.inputs
        first = self.inputs.first
        key = self.inputs.key
        self.first = first[key]
        self.targets = ctx.targets
        embeddings = next((b.name for b in ctx.blocks if b.kind == "embeddings"), None)
        self.spec = ExplainSpec(keys=tuple(first), key=key, baseline=self._baseline_spec(key), embeddings=embeddings,
                                n_steps=self.p.n_steps,
                                internal_batch_size=internal_batch_size(self.subject, self.p.memory_budget_mb))
        """The explainers' setup as data (a cascade step carries it to a model replica)."""
        self.setup = self.spec.bind(self.subject)
        self.methods = explainers(self.inputs.is_text)

    # --- inputs ----------------------------------------------------------------------------------------

    def _baseline_spec(self, key: str) -> Baseline:
        if self.inputs.is_text:
            return Baseline("pad")
        if self.p.baseline == "mean":
            return Baseline("mean", self.subject.input_means(self.ctx.config.batch_size)[key])
        return Baseline("zeros")

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        return self.setup.baseline(x)

    def _pick_samples(self) -> list[int]:
        """A seeded draw balanced over classes, correctly classified samples first."""
        n = len(self.subject)
        rng = np.random.default_rng(self.ctx.config.seed)
        order = rng.permutation(n)
        correct = (self.ctx.clean.predictions == self.targets).numpy() if self.subject.labels is not None \
            else np.ones(n, dtype=bool)
        by_class: dict[int, list[int]] = defaultdict(list)
        for i in order:
            by_class[int(self.targets[i])].append(int(i))
        for c in by_class:
            by_class[c].sort(key=lambda i: not correct[i])  # stable: correct ones first, seeded order kept
        picked: list[int] = []
        while len(picked) < min(self.p.samples, n):
            for c in sorted(by_class):
                if by_class[c] and len(picked) < self.p.samples:
                    picked.append(by_class[c].pop(0))
        return sorted(picked)

    def _content(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per sample, the flat map positions a reader sees: every pixel/feature, or the real tokens."""
        return self.inputs.positions(inputs)

    def _explain(self, name: str, model: nn.Module, inputs: dict[str, torch.Tensor],
                 target: torch.Tensor) -> torch.Tensor:
        return explain(self.methods[name], self.setup, model, inputs, target)

