"""Stage 3, analyses: each one file with one job, listed explicitly (no discovery by introspection)."""

from __future__ import annotations

from auditor.analyses.ablation import ModuleAblation
from auditor.analyses.attribution import Attribution
from auditor.engine.analysis import Analysis, AuditContext, PlanContext, run_one
from auditor.analyses.features import Features
from auditor.analyses.gradients import Gradients
from auditor.analyses.heads import AttentionHeads
from auditor.analyses.inventory import ModuleInventory
from auditor.analyses.lens import Lens
from auditor.analyses.lm_ablation import LMAblation
from auditor.analyses.next_token import NextToken
from auditor.analyses.judge import Judge
from auditor.analyses.performance import Performance
from auditor.analyses.probes import Probes
from auditor.analyses.trust import Trust
from auditor.analyses.weights import Weights
from auditor.config import AnalysesConfig
from auditor.engine.plan import analysis_params
from auditor.errors import ConfigError

ALL_ANALYSES: tuple[type[Analysis], ...] = (ModuleInventory, Performance, NextToken, Gradients, ModuleAblation,
                                              LMAblation, Judge, Attribution, Trust, Probes, Lens, Features,
                                              AttentionHeads, Weights)
"""Every analysis, in report order."""


def check_analysis_config(config: AnalysesConfig, *, source: str = "the configuration") -> None:
    """Every id in `only`/`skip` and every `[analyses.<id>]` table names a known analysis and is valid."""
    known = {a.id: a for a in ALL_ANALYSES}
    for key in [*(config.only or []), *config.skip, *config.tables()]:
        if key not in known:
            raise ConfigError(f"{source}: unknown analysis {key!r} in [analyses]; known: {sorted(known)}")
    for key, table in config.tables().items():
        analysis_params(known[key], table)


__all__ = ["ALL_ANALYSES", "Analysis", "AuditContext", "PlanContext", "check_analysis_config", "run_one"]
