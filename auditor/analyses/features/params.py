"""`[analyses.features]`, and what is kept of each chosen unit."""


from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field



class FeaturesParams(BaseModel):
    """`[analyses.features]`. The defaults keep each demo's section under about a minute on 2 CPU cores."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modules: tuple[str, ...] = ()
    """Modules to visualize (default: up to `max_modules` evenly spaced blocks, plus the head). A module called more
    than once per forward is shown per call; `<module>@<call>` (`pool@2`) names one of its calls."""
    max_modules: int = Field(3, ge=1)
    units: dict[str, tuple[int, ...]] = {}
    """Units to show per module, by index (default: the most relevant `units_per_module`)."""
    units_per_module: int = Field(4, ge=1, le=32)
    top_k: int = Field(8, ge=1, le=64)
    """Samples the capture keeps per unit (largest activation first)."""
    examples: int = Field(4, ge=1, le=16)
    """Top examples shown per unit, by activation and by relevance."""
    objective: Literal["channel", "neuron"] = "channel"
    """Conv units: maximize the channel's mean over space, or its centre position."""
    steps: int = Field(128, ge=1)
    """Image optimization steps (Adam)."""
    learning_rate: float = Field(0.05, gt=0.0)
    transforms: bool = True
    """Random jitter, scaling and rotation at each step."""
    decorrelate: bool = True
    """Optimize decorrelated colours (the data's channel covariance)."""
    tv_weight: float = Field(0.5, ge=0.0)
    """Weight of the total-variation penalty (mean |difference| of neighbouring pixels on the [0, 1] scale)."""
    l2_weight: float = Field(0.02, ge=0.0)
    """Weight of the penalty on the squared distance from mid-range."""
    feature_maps: bool = True
    feature_map_samples: int = Field(4, ge=1, le=10)
    feature_map_channels: int = Field(6, ge=1, le=16)
    token_search: bool = True
    search_units: int = Field(2, ge=0, le=16)
    """Units per module that get a token search (text)."""
    search_length: int = Field(4, ge=1, le=16)
    search_steps: int = Field(10, ge=1)
    search_candidates: int = Field(32, ge=1)
    search_top: int = Field(16, ge=1)
    context_tokens: int = Field(6, ge=1, le=30)
    """Tokens of context shown on each side of a text unit's peak (a causal language model's: before it only)."""
    promoted_tokens: int = Field(5, ge=1, le=20)
    """A language model's neuron: the output tokens shown that its output row promotes most directly."""
    attention: bool = True
    attention_samples: int = Field(32, ge=1)
    """Samples the attention statistics are measured on."""
    attention_patterns: int = Field(1, ge=0, le=4)
    """Samples whose attention patterns are drawn (every layer × head)."""


@dataclass
class UnitView:
    """One chosen unit: its top examples and what the optimization reached."""

    module: str
    unit: int
    relevance: float
    max_real: float
    by_activation: list[tuple[int, float, int]]
    """(sample, activation, peak position), largest first."""
    by_relevance: list[tuple[int, float]] = field(default_factory=list)
    real_objective: float = math.nan
    """The objective's largest value on a real sample: the channel's mean (the capture's pooled values),
    else its peak, which bounds the centre value of a `neuron` objective from above."""
    optimized: float | None = None
    """The unit's peak on the optimized input (text: the value the search reached)."""
    optimized_objective: float | None = None
    random: float | None = None
    search: dict[str, Any] | None = None
    peaks: list[tuple[int, float, int]] = field(default_factory=list)
    """(sample, activation, peak position) of every top-k example, not only the shown ones."""
    fires_on: list[tuple[str, int]] | None = None
    """A language model's neuron: the tokens it peaks on over its top-k examples where it is above 0, with their
    counts."""
    promotes: list[tuple[str, float]] | None = None
    """A language model's neuron: the tokens its output row raises most directly (centred logit per unit)."""
