"""What an analysis needs from the shared capture, as data. The capture records the union, no more.

Every need except the output statistics names the modules it is for (dotted `named_modules()` paths):
recording pooled representations of all 122 modules of MiniLM when a probe reads six would cost memory
and time for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

Names = frozenset[str]


class Needs(BaseModel):
    """What one analysis asks the shared capture to record.

    Per module (where a need names it):
      - `unit_means`: the per-unit mean of the output over samples and positions, padding excluded
        (mean ablation).
      - `pooled`: one vector per sample: mask-aware mean over tokens, global average over space for
        conv maps (probes).
      - `pooled_inputs`: the same of the module's first positional input (what a head reads, where no
        module's output is exactly that: a mean over tokens taken by a function, a flatten).
      - `top_k` of `top_k_modules`: per unit, the `top_k` samples with the largest activation (the unit's
        maximum over positions), with the position where it peaked (feature visualization).
      - `gradients`: per sample, the L2 norm of the gradient of the target with respect to the output,
        and gradient × activation summed over the output (gradient analysis). Needs a backward pass.
      - `unit_relevance`: per sample and unit, gradient × activation summed over positions (relevance of
        units). Needs a backward pass.
      - `input_relevance`: the same of the module's first positional input instead of its output (what an
        attention output projection reads: the heads, side by side); kept where `unit_relevance` is kept, so a
        module is in one of the two, not both. Needs a backward pass.
    Output statistics of every module (the inventory's) and the model's scores are always recorded: the
    report's module table and every metric rest on them. A need that names a module called more than once per
    forward applies per call: the capture keeps each call under `<name>@<k>` (1-based) and, where the calls
    combine, the module over all of them under its name (`Capture.calls`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit_means: Names = frozenset()
    pooled: Names = frozenset()
    pooled_inputs: Names = frozenset()
    top_k: int = Field(0, ge=0)
    top_k_modules: Names = frozenset()
    gradients: Names = frozenset()
    unit_relevance: Names = frozenset()
    input_relevance: Names = frozenset()

    @model_validator(mode="after")
    def _one_relevance_per_module(self) -> Needs:
        both = self.unit_relevance & self.input_relevance
        if both:
            raise ValueError(f"a module's relevance is of its output or of its input, not both: {sorted(both)[:3]}")
        return self

    @property
    def backward(self) -> bool:
        """Whether recording these needs takes a backward pass per batch."""
        return bool(self.gradients or self.unit_relevance or self.input_relevance)

    @property
    def is_empty(self) -> bool:
        """Nothing beyond the statistics and scores every capture records."""
        return self == Needs()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            unit_means=self.unit_means | other.unit_means,
            pooled=self.pooled | other.pooled,
            pooled_inputs=self.pooled_inputs | other.pooled_inputs,
            top_k=max(self.top_k, other.top_k),
            top_k_modules=self.top_k_modules | other.top_k_modules,
            gradients=self.gradients | other.gradients,
            unit_relevance=self.unit_relevance | other.unit_relevance,
            input_relevance=self.input_relevance | other.input_relevance,
        )

    @classmethod
    def union(cls, needs: Iterable[Needs]) -> Needs:
        merged = cls()
        for need in needs:
            merged = merged | need
        return merged

    def modules(self) -> Names:
        """Every module some need names."""
        return (self.unit_means | self.pooled | self.pooled_inputs | self.top_k_modules | self.gradients
                | self.unit_relevance | self.input_relevance)

    def describe(self) -> list[str]:
        """One short line per need, for `auditor run --plan` and the report."""
        lines = ["output statistics of every module, model scores"]
        for label, names in (("per-unit means", self.unit_means), ("pooled representations", self.pooled),
                             ("pooled inputs", self.pooled_inputs),
                             (f"top-{self.top_k} samples per unit", self.top_k_modules),
                             ("gradients (norm, gradient × activation)", self.gradients),
                             ("per-unit gradient × activation", self.unit_relevance),
                             ("per-unit gradient × input", self.input_relevance)):
            if names:
                lines.append(f"{label} of {_count(names)}")
        return lines


def _count(names: Names) -> str:
    shown = sorted(names, key=lambda n: (n.count("."), n))
    if len(shown) <= 3:
        return ", ".join(n or "(model)" for n in shown)
    return f"{len(shown)} modules ({', '.join(n or '(model)' for n in shown[:2])}, …)"
