"""Real audits of a tiny classifier for the release-gate tests: a baseline, the same model with one class
degraded on purpose, the same model with a tiny random perturbation, the baseline on other data, and a
different model. Each audit takes about a second; they are built once per session."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import auditor
from auditor.report.schema import AuditReport

N_SAMPLES = 300


def blobs(n: int = N_SAMPLES, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three overlapping Gaussian blobs in 4 dimensions (class = blob), about 86% separable."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.eye(4)[:3] * 2.0
    return centers[y] + torch.randn(n, 4, generator=generator) * 0.9, y


def trained(layers: int = 1) -> nn.Sequential:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: two threads only wait on each other (0.2 s against 3 s here)
    try:
        return _train(layers)
    finally:
        torch.set_num_threads(threads)


def _train(layers: int) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        hidden: list[nn.Module] = []
        for _ in range(layers - 1):
            hidden += [nn.Linear(16, 16), nn.ReLU()]
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), *hidden, nn.Linear(16, 3))
        x, y = blobs(600, seed=1)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(200):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return model.eval()


def _audit(model: nn.Module, *, seed: int = 0) -> AuditReport:
    return auditor.audit(model, blobs(seed=seed), batch_size=64)


@pytest.fixture(scope="session")
def baseline_model() -> nn.Sequential:
    return trained()


@pytest.fixture(scope="session")
def baseline_audit(baseline_model: nn.Sequential) -> AuditReport:
    return _audit(baseline_model)


@pytest.fixture(scope="session")
def degraded_audit(baseline_model: nn.Sequential) -> AuditReport:
    """The same model with class 2's logit pushed down: class 2 is rarely predicted any more."""
    model = copy.deepcopy(baseline_model)
    with torch.no_grad():
        model[-1].bias[2] -= 3.0
    return _audit(model)


@pytest.fixture(scope="session")
def perturbed_audit(baseline_model: nn.Sequential) -> AuditReport:
    """A tiny random perturbation of every weight (seed 5, scale 0.05): a few predictions flip, mostly
    for the worse, so accuracy drops by about 1.7 points on 300 samples: noise, not a regression."""
    model = copy.deepcopy(baseline_model)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return _audit(model)


@pytest.fixture(scope="session")
def other_data_audit(baseline_model: nn.Sequential) -> AuditReport:
    """The baseline model on other samples of the same distribution: not pairable."""
    return _audit(baseline_model, seed=2)


@pytest.fixture(scope="session")
def deeper_audit() -> AuditReport:
    """A different model (one more hidden layer): its module names differ from the baseline's."""
    return _audit(trained(layers=2))
