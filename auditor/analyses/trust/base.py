"""What every check of the trust analysis starts from: the samples, their inputs and baselines, the
explainers set up on the model."""


from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from auditor.kit.captum import Baseline, internal_batch_size
from auditor.kit.captum_lm import choose_predictions, input_embeddings, texts_to_explain
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
        if self.subject.head.target_reads_inputs:  # a language model's token embeddings, not its positions'
            embeddings = input_embeddings(self.subject) or embeddings
        self.spec = ExplainSpec(keys=tuple(first), key=key, baseline=self._baseline_spec(key), embeddings=embeddings,
                                n_steps=self.p.n_steps,
                                internal_batch_size=internal_batch_size(self.subject, self.p.memory_budget_mb))
        """The explainers' setup as data (a cascade step carries it to a model replica)."""
        self.setup = self.spec.bind(self.subject)
        self.methods = explainers(self.inputs.is_text)

    # --- inputs ----------------------------------------------------------------------------------------

    def _baseline_spec(self, key: str) -> Baseline:
        kind = self.inputs.baseline_kind(self.p.baseline)
        if kind == "mean":
            return Baseline("mean", self.subject.input_means(self.ctx.config.batch_size)[key])
        return Baseline(kind)

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        return self.setup.baseline(x)

    def _pick(self) -> tuple[list[int], torch.Tensor]:
        """The samples explained and each one's target: a classifier's samples (`_pick_samples`) and their classes;
        for a task whose target reads the inputs (a causal LM), next-token predictions (a text, twice when both
        of its predictions are taken) and their positions: per text its most confident correct one and its most
        wrong one (`auditor.kit.captum_lm`), up to `samples` in all."""
        if not self.subject.head.target_reads_inputs:
            samples = self._pick_samples()
            return samples, self.targets[samples]
        texts = texts_to_explain(self.subject, max(1, (self.p.samples + 1) // 2), seed=self.ctx.config.seed)
        chosen = choose_predictions(self.subject, texts, batch_size=self.ctx.config.batch_size)[:self.p.samples]
        if not chosen:
            raise ValueError("the audit texts hold no audited tokens to explain")
        return [q.text for q in chosen], torch.tensor([q.position for q in chosen], dtype=torch.long)

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

    def _content(self, inputs: dict[str, torch.Tensor], target: torch.Tensor) -> list[torch.Tensor]:
        """Per sample, the flat map positions a reader sees: every pixel/feature, or the real tokens; for a causal
        LM's prediction only the prefix it reads (positions up to the target's): deleting a later token would
        change what is scored, or nothing."""
        content = self.inputs.positions(inputs)
        if self.subject.head.target_reads_inputs:
            content = [where[where <= int(t)] for where, t in zip(content, target, strict=True)]
        return content

    def _explain(self, name: str, model: nn.Module, inputs: dict[str, torch.Tensor],
                 target: torch.Tensor) -> torch.Tensor:
        return explain(self.methods[name], self.setup, model, inputs, target)

