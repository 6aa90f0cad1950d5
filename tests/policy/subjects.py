"""The release-gate tests' subject: a hand-set classifier of three Gaussian blobs, and what the tests read
back from its audits (per-sample outcomes, flips between two audits, a class's recall).

Nothing here is trained: training is not bit-reproducible across CPUs (torch picks other vector kernels on
AVX2, AVX-512 or NEON machines, and the sums round differently), so a trained fixture's accuracy is this
machine's. The weights are set by hand, the data are drawn in float64 (torch's float32 normal sampler
itself differs by kernel), and `decisive` proves that no sample sits so near a decision boundary that
float32 rounding could move it. The predictions, and every count and p-value the tests read from them,
are then the same on every CPU.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

import auditor
from auditor.schema.samples import decode_ints
from auditor.schema.report import AuditReport
from tests.models import portable_randn

N_SAMPLES = 300
MARGIN = 1e-4
"""Smallest gap between the two largest logits that the fixtures allow: float32 rounding moves logits of
this size by ~1e-6, so a larger gap decides the same class on every CPU."""


def blobs(n: int = N_SAMPLES, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three overlapping Gaussian blobs in 4 dimensions (class = blob); the Bayes classifier gets ~91%."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.eye(4)[:3] * 2.0
    return centers[y] + portable_randn(n, 4, generator=generator) * 0.9, y


def nearest_center(layers: int = 1) -> nn.Sequential:
    """The Bayes classifier of `blobs`, by hand: logit k = 2·x_k, computed without rounding.

    The hidden layer holds x⁺ and x⁻ of every input twice (16 ReLU units); the head adds the two copies of
    x_k⁺ and subtracts those of x_k⁻: sums of equal terms and zeros, exact in float32 in any order. A
    deeper model repeats the hidden units through an identity layer (ReLU of a ReLU changes nothing).
    """
    signs = torch.cat([torch.eye(4), -torch.eye(4)])
    first = nn.Linear(4, 16)
    hidden: list[nn.Module] = []
    head = nn.Linear(16, 3)
    with torch.no_grad():
        first.weight.copy_(torch.cat([signs, signs]))
        first.bias.zero_()
        for _ in range(layers - 1):
            identity = nn.Linear(16, 16)
            identity.weight.copy_(torch.eye(16))
            identity.bias.zero_()
            hidden += [identity, nn.ReLU()]
        head.weight.zero_()
        head.bias.zero_()
        for k in range(3):
            head.weight[k, [k, 8 + k]] = 1.0
            head.weight[k, [4 + k, 12 + k]] = -1.0
    return nn.Sequential(first, nn.ReLU(), *hidden, head).eval()


def decisive(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """`model`, after checking in float64 that every sample's top two logits are at least MARGIN apart."""
    with torch.no_grad():
        top2 = copy.deepcopy(model).double()(x.double()).topk(2, dim=1).values
    gap = float((top2[:, 0] - top2[:, 1]).min())
    assert gap > MARGIN, f"a sample is within {gap:.2g} of a decision boundary: its class may differ by CPU"
    return model


def outcomes(audit: AuditReport) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, labels) per sample, as the audit recorded them."""
    details = next(s for s in audit.sections if s.id == "performance").details
    return decode_ints(str(details["predicted"])), decode_ints(str(details["labels"]))


def flips(before: AuditReport, after: AuditReport, *, label: int | None = None) -> tuple[int, int]:
    """(now wrong, now right): samples (of one label, or all) whose outcome changed between two audits."""
    old, labels = outcomes(before)
    new, _ = outcomes(after)
    keep = np.ones_like(labels, dtype=bool) if label is None else labels == label
    was, now = (old == labels)[keep], (new == labels)[keep]
    return int((was & ~now).sum()), int((~was & now).sum())


def recall(audit: AuditReport, label: int) -> float:
    predicted, labels = outcomes(audit)
    return float((predicted[labels == label] == label).mean())


def audit_of(model: nn.Module, *, seed: int = 0) -> AuditReport:
    data = blobs(seed=seed)
    return auditor.audit(decisive(model, data[0]), data, batch_size=64)
