"""`[analyses.judge]`: what is ablated in a generator, how, and the thresholds of its findings."""


from __future__ import annotations

import warnings
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditor.kit.removal import Granularity




class JudgeParams(BaseModel):
    """`[analyses.judge]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modules: Granularity | tuple[str, ...] = "default"
    """"default": every block and every leaf with parameters; "blocks"; "leaves"; "all"; or glob patterns."""
    mode: Literal["mean", "zero", "resample"] = "mean"
    """Replace an output by its per-unit mean over the noise batch, by zeros, or by the output the module gives
    another sample of the same batch (resample ablation: the samples keep their variety, and what is lost is
    what the module carries for this sample; a sequential generator mean-ablated draws one image)."""
    unit_layers: tuple[str, ...] = ()
    """Layers whose units (channels) are also ablated one at a time: which unit draws which class?"""
    max_units: int = Field(64, ge=1)
    noise_batches: int = Field(8, ge=2)
    """The noise is cut into this many batches; every interval is over them (Student's t)."""
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    critical_drop: float = Field(0.5, gt=0.0, le=1.0)
    """`judge.critical_module`: the mean realness falls by at least this share of the intact samples', or the
    samples' diversity by at least this share (a generator that draws one image has lost its job even when
    the discriminator is fooled)."""
    class_drop: float = Field(0.5, gt=0.0, le=1.0)
    """`judge.class_specific`: one class's share of the samples falls by at least this share of its own ..."""
    class_gap: float = Field(0.3, gt=0.0, le=1.0)
    """... and by at least this much more (relatively) than any other class's."""
    min_class_share: float = Field(0.02, ge=0.0, lt=1.0)
    """Classes holding less of the intact samples than this are not judged one by one."""
    redundant_margin: float = Field(0.02, gt=0.0, le=1.0)
    """`judge.redundant`: realness and confidence drops, class shift and relative diversity change all lie
    within ± this (their whole intervals)."""
    cache_mib: int = Field(256, ge=0)
    """Memory for recorded outputs that let a pass skip what precedes the ablated module (0: none)."""
    grid_rows: int = Field(12, ge=2)
    """Rows of the sample grid: the intact generator and the ablations that move realness most."""
    grid_columns: int = Field(10, ge=1)
    """Samples per row (a conditional generator: one per class, in order)."""
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


