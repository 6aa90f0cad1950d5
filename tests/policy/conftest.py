"""Real audits of a tiny classifier for the release-gate tests: a baseline, the same model with one class
degraded on purpose, the same model with a small perturbation, the baseline on other data, and a deeper
model. Each audit takes about a second; they are built once per session. The models are set by hand and
the data drawn portably (see `tests.policy.subjects`): every number the tests read is the same on any CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from auditor.schema.report import AuditReport
from tests.models import portable_randn
from tests.policy.subjects import audit_of, nearest_center


@pytest.fixture(scope="session")
def baseline_model() -> nn.Sequential:
    return nearest_center()


@pytest.fixture(scope="session")
def baseline_audit(baseline_model: nn.Sequential) -> AuditReport:
    return audit_of(baseline_model)


@pytest.fixture(scope="session")
def degraded_audit(baseline_model: nn.Sequential) -> AuditReport:
    """The same model with class 2's logit pushed down: class 2 is predicted less often."""
    model = copy.deepcopy(baseline_model)
    with torch.no_grad():
        model[-1].bias[2] -= 1.25
    return audit_of(model)


@pytest.fixture(scope="session")
def perturbed_audit(baseline_model: nn.Sequential) -> AuditReport:
    """A small random perturbation of every weight: a few predictions flip, mostly for the worse, so
    accuracy drops by one to two points on 300 samples: noise, not a regression."""
    model = copy.deepcopy(baseline_model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(portable_randn(*parameter.shape, generator=generator) * 0.1)
    return audit_of(model)


@pytest.fixture(scope="session")
def other_data_audit(baseline_model: nn.Sequential) -> AuditReport:
    """The baseline model on other samples of the same distribution: not pairable."""
    return audit_of(baseline_model, seed=2)


@pytest.fixture(scope="session")
def deeper_audit() -> AuditReport:
    """A different model (one more hidden layer): its module names differ from the baseline's."""
    return audit_of(nearest_center(layers=2))
