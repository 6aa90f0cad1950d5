"""What the probes read: the blocks' pooled outputs and the head's pooled input from a capture, and the model's own
head applied to them as a lens."""

from __future__ import annotations

import numpy as np
import torch

from auditor.analyses.probes.sets import Property, to_tensor
from auditor.engine.analysis import PlanContext
from auditor.engine.capture import Capture
from auditor.subject.task import log_probabilities
from auditor.walk.needs import Needs


def head_block(ctx: PlanContext) -> str | None:
    """The head block (its input is probed), or None for a bare encoder."""
    return next((b.name for b in ctx.blocks if b.kind == "head"), None)


def probe_needs(ctx: PlanContext) -> Needs:
    """Pooled outputs of every block but the head, and the pooled input of the head."""
    blocks = frozenset(b.name for b in ctx.blocks if b.kind != "head")
    head = head_block(ctx)
    return Needs(pooled=blocks, pooled_inputs=frozenset({head}) if head is not None else frozenset())


def representations(capture: Capture, needs: Needs, head: str | None) -> dict[str, np.ndarray]:
    """Module name -> (samples, units) float64: block outputs, and under the head's name its input. A block called
    more than once per forward is probed per call (`<name>@<k>`), not as the mean of its calls."""
    reps = {k: capture.pooled[k].double().numpy() for n in needs.pooled for k in (capture.call_keys(n) or [n])
            if k in capture.pooled}
    if head is not None and head in capture.pooled_inputs:
        reps[head] = capture.pooled_inputs[head].double().numpy()
    return reps


def probed_order(capture: Capture, needs: Needs, head: str | None) -> list[str]:
    """The modules that ran, in execution order (the head's entry, its input, where the head runs)."""
    names = [k for n in needs.pooled for k in (capture.call_keys(n) or [n])]
    names += [n for n in needs.pooled_inputs if n not in names]
    names = [n for n in names if n in capture.records and capture.records[n].order is not None]
    return sorted(names, key=lambda n: (capture.records[n].order or 0, n))


def head_lens(head: torch.nn.Module, x: np.ndarray, labels: np.ndarray, head_classes: np.ndarray) -> float | None:
    """Accuracy of the model's own head applied to a representation, without fitting; None if it cannot be."""
    try:
        with torch.no_grad():
            scores = head(to_tensor(x, head))
        predicted = log_probabilities(scores.float().cpu()).argmax(dim=1).numpy()
    except Exception:  # a head that is not a plain map of its input width (a conv, a tuple output)
        return None
    return float((predicted == head_classes[labels]).mean())


def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


def compact(labels: np.ndarray) -> np.ndarray:
    present = np.unique(labels)
    return np.searchsorted(present, labels)


def present(prop: Property, kept: np.ndarray) -> np.ndarray:
    """The classes of `prop` that survive dropping one-sample classes, in order."""
    return np.unique(prop.labels[kept])
