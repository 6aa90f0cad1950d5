"""Ablation: what breaks when a part is removed. `analysis.py` declares it and runs the patched passes,
`params.py` is its table, `metrics.py` scores each pass against the intact model (paired bootstrap),
`findings.py` says what the numbers mean, `report.py` draws and tabulates them. The removal targets
(modules, residual branches, heads, units, pruning steps) are shared with the judge: `auditor.kit.removal`."""

from auditor.analyses.ablation.analysis import ModuleAblation
from auditor.analyses.ablation.params import AblationParams

__all__ = ["AblationParams", "ModuleAblation"]
