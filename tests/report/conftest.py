"""Fixtures for the renderer tests: the hand-built sample report and its HTML."""

from __future__ import annotations

import pytest

from auditor.report.html import render_html
from auditor.schema.report import AuditReport
from tests.report.sample_report import make_sample_report


@pytest.fixture(scope="session")
def sample_report() -> AuditReport:
    return make_sample_report()


@pytest.fixture(scope="session")
def sample_html(sample_report: AuditReport) -> str:
    return render_html(sample_report)


@pytest.fixture(scope="session")
def gate_report(sample_report: AuditReport) -> AuditReport:
    """The sample report with its metrics keyed as the pipeline keys them (`<section id>.<metric>`)."""
    metrics = {f"{s.id}.{k}": v for s in sample_report.sections for k, v in s.metrics.items()}
    return sample_report.model_copy(update={"metrics": metrics})
