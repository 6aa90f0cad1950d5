"""`[analyses.gradients]`: thresholds of its findings and the conductance sweep."""


from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field





class GradientsParams(BaseModel):
    """`[analyses.gradients]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vanishing_ratio: float = Field(0.01, gt=0.0, lt=1.0)
    """Warn when the first block of a repeated stack gets less than this share of the last one's gradient norm."""
    exploding_ratio: float = Field(100.0, gt=1.0)
    """Warn when it gets more than this multiple."""
    conductance: bool = True
    """Measure the conductance of residual branches (and of `conductance_units`)."""
    conductance_samples: int = Field(64, ge=1)
    """Samples the conductance sweep runs on (a seeded draw from the audit data)."""
    conductance_steps: int = Field(20, ge=2, le=500)
    """Integration steps along the path (Captum's n_steps)."""
    conductance_rule: Literal["trapezoid", "captum"] = "trapezoid"
    """"trapezoid": evenly spaced points from baseline to input, trapezoid rule (second-order; full cuts carry
    F(x) - F(baseline)). "captum": Captum's Gauss-Legendre points and first-order rule, Captum's exact numbers."""
    baseline: Literal["zeros", "mean"] = "zeros"
    """Image and array inputs: the path starts at a black (zero) input or at the data mean. Text always
    starts at a sequence of pad tokens that keeps [CLS] and [SEP]."""
    conductance_units: tuple[str, ...] = ()
    """Modules whose output gets per-unit conductance (`conductance/<unit>` in module_metrics)."""
    top: int = Field(12, ge=1)
    """Rows per cut in the ranked table."""


