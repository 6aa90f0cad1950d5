"""`[analyses.ablation]`: what is ablated, how, and the thresholds of its findings."""


from __future__ import annotations

import warnings

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditor.kit.removal import (
    Granularity,
)




class AblationParams(BaseModel):
    """`[analyses.ablation]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modules: Granularity | tuple[str, ...] = "default"
    """"default": every block and every leaf with parameters; "blocks"; "leaves"; "all"; or glob patterns."""
    mode: Literal["mean", "zero"] = "mean"
    """Replace an output by its per-unit mean over the audit data (padding excluded), or by zeros."""
    heads: bool = True
    """Ablate every attention head of a Hugging Face transformer, one at a time."""
    unit_layers: Literal["default", "none"] | tuple[str, ...] = "default"
    """Layers whose units are ablated one at a time: "default" (the last convolutional block and the layer
    feeding the head), "none", or module names."""
    max_units: int = Field(512, ge=1)
    """At most this many units per unit layer (the first ones)."""
    prune: bool = True
    """Kernel-pruning sweeps over the convolutions (see `prune_linear`, `prune_layers`)."""
    prune_linear: bool = False
    """Sweep linear layers too (their neurons), the head excepted."""
    prune_layers: tuple[str, ...] = ()
    """Glob patterns naming the layers to sweep instead (convolutions or linear layers)."""
    prune_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    prune_tolerance: float = Field(0.01, ge=0.0, le=1.0)
    """A layer is prunable when removing half its kernels (smallest L1 first) costs at most this much
    accuracy (a bare encoder: this much cosine distance)."""
    bootstrap: int = Field(1000, ge=100)
    """Paired bootstrap resamples of the samples, for every interval."""
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    critical_drop: float = Field(0.1, gt=0.0, le=1.0)
    """`ablation.critical_module`: accuracy drops at least this much (and its interval excludes 0)."""
    class_drop: float = Field(0.3, gt=0.0, le=1.0)
    """`ablation.class_specific`: one class's recall drops at least this much ..."""
    class_gap: float = Field(0.2, gt=0.0, le=1.0)
    """... and at least this much more than any other class's."""
    redundant_margin: float = Field(0.02, gt=0.0, le=1.0)
    """`ablation.redundant`: the drop's whole interval lies within ± this, at most this share of predictions
    may change (one-sided upper bound) ... A bare encoder: the embedding change's interval lies below this share
    of the median cosine distance between two samples' embeddings."""
    redundant_kl: float = Field(0.01, gt=0.0)
    """... and the mean KL divergence from the intact predictions is below this (nats)."""
    stack: int = Field(16, ge=1)
    """Up to this many ablations share one forward, each on its own copy of the batch stacked along the batch
    dimension (at most `stack_rows` rows in all), where the model treats the copies alike; 1: one at a time.
    Stacked results equal one-at-a-time ones within float rounding (the batch size changes it)."""
    stack_rows: int = Field(1024, ge=1)
    """At most this many rows (samples × copies) in one stacked forward."""
    stack_mib: int = Field(256, ge=1)
    """... and at most this much memory for the largest module output of one stacked forward."""
    cache_mib: int = Field(1024, ge=0)
    """Memory for the recorded outputs that let a pass skip what precedes the ablated module (0: none)."""
    top: int = Field(30, ge=1)
    """Modules in the bar chart."""
    max_findings: int | None = Field(None, ge=1)
    """Deprecated and ignored: findings are no longer capped (every finding is in audit.json, for the gate
    and the diff). Accepted so that older configs still load, with a warning."""

    @field_validator("max_findings")
    @classmethod
    def _no_cap(cls, value: int | None) -> int | None:
        if value is not None:
            warnings.warn("max_findings is deprecated and ignored: every finding is kept", FutureWarning, stacklevel=2)
        return value


