"""`[analyses.lm_ablation]`: what is ablated, how, and the thresholds of its findings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["layer", "attention", "head", "mlp", "neuron"]


class LMAblationParams(BaseModel):
    """`[analyses.lm_ablation]`: what is ablated, how, and the thresholds of its findings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["mean", "resample"] = "mean"
    layers: bool = True
    attention: bool = True
    heads: bool = True
    mlps: bool = True
    neurons: tuple[int, ...] = ()
    """Layers (counted from 0) whose MLP neurons are each ablated alone, named `<MLP activation>#<unit>`
    (`transformer.h.0.mlp.act#17`): one pass per neuron (GPT-2-small has 3,072 per layer)."""
    neurons_shown: int = Field(20, ge=0)
    """Rows of the neurons' table: the neurons whose ablation raises the loss most."""
    critical: float = Field(1.0, gt=0.0)
    """A target whose ablation raises the loss by at least this many nats (interval low end) is critical."""
    unused: float = Field(0.01, gt=0.0)
    """A target whose interval lies within +/- this many nats changes nothing measurable."""
    in_context: float = Field(0.5, gt=0.0)
    """A target serves in-context repeats when its ablation raises the loss on repeated tokens by at least
    this much and on first occurrences by less than a fifth of it."""
    cache_mib: int = Field(1024, ge=0)
    """Mean ablation: memory for the recorded outputs that let a pass skip what precedes the ablated target
    (the engine's cached prefixes); 0: every pass runs the whole model."""
    stack: int = Field(16, ge=1)
    """Mean ablation: up to this many passes share one forward on stacked copies of the batch (at most
    `stack_mib` for the largest module output of one forward), where the model treats the copies alike."""
    stack_mib: int = Field(256, ge=1)
    min_texts: int = Field(10, ge=2)
    """With fewer texts the intervals have no power: the section says inconclusive."""
