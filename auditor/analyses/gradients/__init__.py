"""Gradients and contributions: per-module gradient norms and gradient × activation from the capture's one
backward, ranked within cuts, and the conductance of residual branches from one Integrated Gradients sweep
(`conductance.py`). `analysis.py` declares and runs it, `params.py` is its table, `report.py` its tables
and figures."""

from auditor.analyses.gradients.analysis import Gradients
from auditor.analyses.gradients.params import GradientsParams

__all__ = ["Gradients", "GradientsParams"]
