"""Stage 3, analyses: each one file with one job, listed explicitly (no discovery by introspection)."""

from __future__ import annotations

from auditor.analyses.base import Analysis, AuditContext, applies, run_one
from auditor.analyses.inventory import ModuleInventory
from auditor.analyses.performance import Performance

ALL_ANALYSES: tuple[type[Analysis], ...] = (ModuleInventory, Performance)
"""Every analysis, in report order."""

__all__ = ["ALL_ANALYSES", "Analysis", "AuditContext", "applies", "run_one"]
