"""The ablation analysis with its passes stacked (several per forward) says what it says one at a time."""

from __future__ import annotations

import math

import torch

import auditor
from auditor.config import AuditConfig
from tests.models import build_tiny_cnn, portable_randn


def _audit(stack: int):  # type: ignore[no-untyped-def]
    x = portable_randn(48, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(48) % 3
    config = AuditConfig.model_validate({"batch_size": 16, "analyses": {"ablation": {"stack": stack,
                                                                                    "bootstrap": 200}}})
    return auditor.audit(build_tiny_cnn(), (x, y), config=config, analyses=["ablation"], threads=1)


def test_stacked_ablation_gives_the_same_findings_and_numbers_in_fewer_forwards() -> None:
    one, stacked = _audit(1), _audit(16)
    a, b = one.section("ablation"), stacked.section("ablation")
    assert a.details["cache"]["stacked"] == 0 and a.details["cache"]["forwards"] == a.metrics["passes"]
    assert b.details["cache"]["stacked"] > 0 and b.details["cache"]["forwards"] < a.details["cache"]["forwards"]
    assert [(f.id, f.module, f.message) for f in one.findings] == [(f.id, f.module, f.message) for f in stacked.findings]
    assert a.metrics.keys() == b.metrics.keys()
    for key, value in a.metrics.items():
        assert (math.isnan(value) and math.isnan(b.metrics[key])) or abs(value - b.metrics[key]) <= 1e-6, key
