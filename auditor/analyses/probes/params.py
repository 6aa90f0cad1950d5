"""`[analyses.probes]`: the probes' parameters."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProbesParams(BaseModel):
    """`[analyses.probes]`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    folds: int = Field(5, ge=2, le=20)
    """Stratified folds (fewer when the rarest class has fewer samples)."""
    permutations: int = Field(20, ge=1, le=1000)
    """Label permutations of the permutation baseline."""
    random_init: bool = True
    """Probe the re-initialized network too (one more pass over each probe set)."""
    mdl: bool = True
    """Measure the online code length (MDL) of each property at each block."""
    labels: bool = True
    """Probe for the audit data's labels."""
    builtin: bool = True
    """Probe text models for sentiment (built-in sentences) and image models for gratings."""
    data: str | None = None
    """A labelled file of extra inputs: CSV/JSONL for text (a text column and property columns), .npz for
    images and arrays (`x` as the model takes it, one label array per property)."""
    properties: tuple[str, ...] = ()
    """Columns (arrays) of `data` to probe for; default: every column but the text (every array but `x`)."""
    text_column: str | None = None
    """The text column of `data` (default: the audit data's)."""
    max_samples: int = Field(2000, ge=10)
    """At most this many samples of `data` (a seeded draw)."""
    not_learned_margin: float = Field(0.05, ge=0.0, le=1.0)
    """`probes.not_learned` when the trained network beats the random one by less than this at the peak."""
    lost_margin: float = Field(0.1, ge=0.0, le=1.0)
    """`probes.lost_in_head` when the head's input falls this far below the peak (and outside its interval)."""
