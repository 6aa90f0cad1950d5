"""The time budget: the plan's passes times the measured cost of one, against what the audit took.

The model's time is known by construction: every block sleeps a fixed time per call, whatever the batch, so
a pass costs what the blocks it runs sleep, on any CPU and however busy the machine is."""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

import auditor
from auditor.config import AuditConfig
from auditor.pipeline import _in_memory_data, _wrap_module, plan_subject
from auditor.subject import build_subject

SLEEP = 0.05
"""Seconds each block sleeps per call."""
FACTOR = 2.0
"""The measured time of the passes lies within this factor of the budget, either way (the hooks' Python work
is slower on a busy machine; the sleeps do not change)."""


class SleepyBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        time.sleep(SLEEP)
        return torch.relu(self.linear(x))


def _model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(*(SleepyBlock(6) for _ in range(4)), nn.Linear(6, 3))


def _data() -> tuple[Tensor, Tensor]:
    x = (torch.arange(64 * 6, dtype=torch.float64).reshape(64, 6) % 7 / 7).float()
    return x, torch.arange(64) % 3


def test_the_ablation_budget_counts_cached_prefixes_and_matches_its_time() -> None:
    config = AuditConfig.model_validate({"batch_size": 32, "analyses": {"ablation": {"bootstrap": 100,
                                                                                    "unit_layers": "none"}}})
    report = auditor.audit(_model(), _data(), config=config, analyses=["ablation"], threads=1)
    meta = report.metadata
    section = report.section("ablation")
    cost = section.cost
    assert cost is not None and cost.forward_equivalents is not None
    # 4 blocks and their 4 linears and the head, each pass running only what follows: fewer full forwards than passes
    assert cost.forward_equivalents < cost.forwards - 3
    assert set(meta.budget_seconds) == {"capture", "ablation"}
    # the passes against their budget (the section's figures, drawn after them, are not passes)
    for stage, spent in (("capture", meta.stage_seconds["capture"]), ("ablation", section.details["cache"]["seconds"])):
        assert 1 / FACTOR < spent / meta.budget_seconds[stage] < FACTOR, (stage, spent, meta.budget_seconds[stage])


def test_the_plans_estimate_is_within_the_factor_of_the_audit() -> None:
    config = AuditConfig.model_validate({"batch_size": 32, "threads": 1, "analyses": {
        "only": ["ablation"], "ablation": {"bootstrap": 100, "unit_layers": "none"}}})
    x, y = _data()
    subject = build_subject(_wrap_module(_model(), None), _in_memory_data((x, y), max_samples=512, seed=0), config)
    one_batch = next(subject.batches(32)).inputs
    with torch.no_grad():
        started = time.perf_counter()
        subject.adapter.forward(subject.model, one_batch)
        seconds = time.perf_counter() - started
    plan = plan_subject(subject, config, seconds_per_batch=seconds)[1]
    assert plan.estimate_seconds is not None and any(line.startswith("budget: ~") for line in plan.describe())
    report = auditor.audit(_model(), (x, y), config=config)
    spent = report.metadata.stage_seconds["capture"] + report.section("ablation").details["cache"]["seconds"]
    assert 1 / FACTOR < spent / plan.estimate_seconds < FACTOR, (spent, plan.estimate_seconds)


def test_the_timed_first_batch_is_the_audits_and_not_a_copys_over_other_data() -> None:
    import dataclasses

    config = AuditConfig()
    x, y = _data()
    subject = build_subject(_wrap_module(_model(), None), _in_memory_data((x, y), max_samples=512, seed=0), config)
    first = subject.first_batch(32)
    assert next(subject.batches(32)) is first  # encoded once, reused by the passes
    from auditor.subject.adapters import ModelAdapter

    data = _in_memory_data((x[:8] + 1, y[:8]), max_samples=512, seed=0)
    other = dataclasses.replace(subject, data=data, adapter=ModelAdapter(subject.loaded, data, config.data, "cpu"),
                                _encoded={})  # as the probes make their probe sets
    assert torch.equal(other.first_batch(32).inputs["x"], x[:8] + 1)
