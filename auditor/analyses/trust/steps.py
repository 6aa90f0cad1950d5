"""The randomization cascade as independent items of an executor's `map`: each step computed alone, on whichever
model replica runs it (here, or an actor of a cluster), with the maps of the cumulative walk.

Item k (k >= 0) re-initializes groups 0..k of its own copy of the replica's model, from the walk's seeds in
the walk's order (`randomized_copy` to step k - 1, then `reinitialize_step` for its own group: the walk's
weights), and explains the trust samples on it; item -1 explains them on the trained model itself. A step
whose re-initialized group the decision never reads (MiniLM's pooler under a mean-pooling head) leaves the
function as the step before left it: its maps would be the previous step's, so the item checks that with two
forwards (before and after its own group) and returns None instead of explaining again; the driver then takes
the previous step's maps, as the walk did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from auditor.analyses.trust.explainers import Explainer, ExplainSpec, explain
from auditor.analyses.trust.randomize import Group, randomized_copy, reinitialize_step
from auditor.subject import Subject

TRAINED = -1
"""The item that explains the trained model (no group re-initialized)."""


@dataclass(frozen=True)
class CascadeStep:
    """One item of the cascade: the maps of the trust samples by every method, at step `k`."""

    k: int
    groups: tuple[Group, ...]
    seed: int
    spec: ExplainSpec
    methods: Mapping[str, Explainer]
    """Module-level functions (the built-in explainers) travel as references; a custom one pickles by value."""
    inputs: dict[str, torch.Tensor]
    target: torch.Tensor


StepMaps = dict[str, torch.Tensor] | None
"""Maps by method, or None: the step's function is the previous step's, and so are its maps."""


def explain_step(subject: Subject, step: CascadeStep) -> StepMaps:
    """The item's maps (see the module docstring); the replica's model is only read (copied, then explained)."""
    setup = step.spec.bind(subject)
    if step.k == TRAINED:
        return {m: explain(f, setup, subject.model, step.inputs, step.target) for m, f in step.methods.items()}
    if step.k == 0:
        clone = randomized_copy(subject.model, step.groups, 0, seed=step.seed)
    else:  # the function before and after this step's own group
        clone = randomized_copy(subject.model, step.groups, step.k - 1, seed=step.seed)
        with torch.no_grad():
            previous = subject.adapter.forward(clone, step.inputs)
            reinitialize_step(clone, step.groups[step.k], step.k, seed=step.seed)
            after = subject.adapter.forward(clone, step.inputs)
            if torch.equal(after.nan_to_num(), previous.nan_to_num()):  # a language model's scores hold NaNs
                return None
    return {m: explain(f, setup, clone, step.inputs, step.target) for m, f in step.methods.items()}

def resolve(results: Sequence[StepMaps]) -> list[dict[str, torch.Tensor]]:
    """The maps of every item in order, a None (an unchanged function) replaced by the step before's maps."""
    out: list[dict[str, torch.Tensor]] = []
    for k, maps in enumerate(results):
        if maps is None:
            if not out:
                raise ValueError(f"cascade item {k} has no previous step to take its maps from")
            maps = out[-1]
        out.append(maps)
    return out
